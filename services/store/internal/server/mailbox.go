package server

import (
	"context"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"

	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

// MailboxServer implements storev1.MailboxServiceServer for the account of
// the calling session.
type MailboxServer struct {
	storev1.UnimplementedMailboxServiceServer
	d Deps
}

// NewMailboxServer returns the mailbox service.
func NewMailboxServer(d Deps) (*MailboxServer, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return &MailboxServer{d: d.withDefaults()}, nil
}

func (s *MailboxServer) fail(ctx context.Context, op string, err error) error {
	return toStatus(ctx, s.d.Logger, op, err)
}

func (s *MailboxServer) event(ctx context.Context, sc repo.Scope, kind storev1.MailboxEventKind, mb repo.Mailbox, name string) {
	s.d.Events.Publish(ctx, &storev1.MailboxEvent{
		TenantId: idString(sc.TenantID), AccountId: idString(sc.AccountID),
		MailboxId: idString(mb.ID), Mailbox: name, Kind: kind,
		Modseq: mb.HighestModSeq, UidNext: mb.UIDNext,
	})
}

// ListMailboxes answers LIST and LSUB (RFC 9051 §6.3.9, RFC 5258).
func (s *MailboxServer) ListMailboxes(ctx context.Context, req *storev1.ListMailboxesRequest) (*storev1.ListMailboxesResponse, error) {
	sc, err := callerScope(ctx)
	if err != nil {
		return nil, err
	}
	entries, err := s.d.Repo.ListMailboxes(ctx, sc, req.GetReference(), req.GetPattern(), req.GetSubscribedOnly())
	if err != nil {
		return nil, s.fail(ctx, "list mailboxes", err)
	}
	resp := &storev1.ListMailboxesResponse{Mailboxes: make([]*storev1.Mailbox, 0, len(entries))}
	for _, e := range entries {
		m := &storev1.Mailbox{Name: e.Name, SpecialUse: e.SpecialUse, Subscribed: e.Subscribed}
		switch {
		case e.NonExistent:
			m.Attributes = append(m.Attributes, `\NonExistent`)
		case e.HasChildren:
			m.Attributes = append(m.Attributes, `\HasChildren`)
		default:
			m.Attributes = append(m.Attributes, `\HasNoChildren`)
		}
		if e.NoSelect && !e.NonExistent {
			m.Attributes = append(m.Attributes, `\Noselect`)
		}
		if e.Subscribed {
			m.Attributes = append(m.Attributes, `\Subscribed`)
		}
		resp.Mailboxes = append(resp.Mailboxes, m)
	}
	return resp, nil
}

// CreateMailbox creates a mailbox and its missing parents (RFC 9051 §6.3.4).
func (s *MailboxServer) CreateMailbox(ctx context.Context, req *storev1.CreateMailboxRequest) (*storev1.CreateMailboxResponse, error) {
	sc, err := callerScope(ctx)
	if err != nil {
		return nil, err
	}
	mb, err := s.d.Repo.CreateMailbox(ctx, sc, req.GetName(), req.GetSpecialUse())
	if err != nil {
		return nil, s.fail(ctx, "create mailbox", err)
	}
	s.event(ctx, sc, storev1.MailboxEventKind_MAILBOX_EVENT_KIND_MAILBOX_CREATED, mb, mb.Name)
	return &storev1.CreateMailboxResponse{Mailbox: &storev1.Mailbox{
		Id: idString(mb.ID), Name: mb.Name, SpecialUse: mb.SpecialUse, Attributes: []string{`\HasNoChildren`},
	}}, nil
}

// DeleteMailbox deletes a mailbox (RFC 9051 §6.3.5).
func (s *MailboxServer) DeleteMailbox(ctx context.Context, req *storev1.DeleteMailboxRequest) (*storev1.DeleteMailboxResponse, error) {
	sc, err := callerScope(ctx)
	if err != nil {
		return nil, err
	}
	// Read first so that the event can name the mailbox id that went.
	mb, err := lookupMailbox(ctx, s.d.Repo, sc, req.GetName())
	if err != nil {
		return nil, s.fail(ctx, "delete mailbox", err)
	}
	if err := s.d.Repo.DeleteMailbox(ctx, sc, req.GetName()); err != nil {
		return nil, s.fail(ctx, "delete mailbox", err)
	}
	s.event(ctx, sc, storev1.MailboxEventKind_MAILBOX_EVENT_KIND_MAILBOX_DELETED, mb, mb.Name)
	return &storev1.DeleteMailboxResponse{}, nil
}

// RenameMailbox renames a mailbox and its children (RFC 9051 §6.3.6).
func (s *MailboxServer) RenameMailbox(ctx context.Context, req *storev1.RenameMailboxRequest) (*storev1.RenameMailboxResponse, error) {
	sc, err := callerScope(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.d.Repo.RenameMailbox(ctx, sc, req.GetName(), req.GetNewName()); err != nil {
		return nil, s.fail(ctx, "rename mailbox", err)
	}
	mb, err := s.d.Repo.MailboxByName(ctx, sc, req.GetNewName())
	if err == nil {
		s.event(ctx, sc, storev1.MailboxEventKind_MAILBOX_EVENT_KIND_MAILBOX_RENAMED, mb, mb.Name)
	}
	return &storev1.RenameMailboxResponse{}, nil
}

// Subscribe adds a name to the subscription list (RFC 9051 §6.3.7).
func (s *MailboxServer) Subscribe(ctx context.Context, req *storev1.SubscribeRequest) (*storev1.SubscribeResponse, error) {
	sc, err := callerScope(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.d.Repo.Subscribe(ctx, sc, req.GetName()); err != nil {
		return nil, s.fail(ctx, "subscribe", err)
	}
	return &storev1.SubscribeResponse{}, nil
}

// Unsubscribe removes a name from the subscription list (§6.3.8).
func (s *MailboxServer) Unsubscribe(ctx context.Context, req *storev1.UnsubscribeRequest) (*storev1.UnsubscribeResponse, error) {
	sc, err := callerScope(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.d.Repo.Unsubscribe(ctx, sc, req.GetName()); err != nil {
		return nil, s.fail(ctx, "unsubscribe", err)
	}
	return &storev1.UnsubscribeResponse{}, nil
}

// mailboxStatus converts the state row. recent is an upper bound
// (messages above the watermark, some of which may have been expunged):
// counting exactly would read the messages, and STATUS must not (RECENT
// is gone from IMAP4rev2 anyway).
func mailboxStatus(mb repo.Mailbox) *storev1.MailboxStatus {
	var recent uint32
	if mb.UIDNext-1 > mb.RecentUID {
		recent = min(mb.UIDNext-1-mb.RecentUID, uint32(max(mb.Messages, 0)))
	}
	return &storev1.MailboxStatus{
		MailboxId: idString(mb.ID), Name: mb.Name,
		Messages: uint32(max(mb.Messages, 0)), Recent: recent, Unseen: uint32(max(mb.Unseen, 0)),
		UidNext: mb.UIDNext, UidValidity: mb.UIDValidity, HighestModseq: mb.HighestModSeq,
		Size: mb.Size, Deleted: uint32(max(mb.Deleted, 0)),
	}
}

// GetMailboxStatus answers STATUS from the mailbox row (RFC 9051 §6.3.11).
func (s *MailboxServer) GetMailboxStatus(ctx context.Context, req *storev1.GetMailboxStatusRequest) (*storev1.GetMailboxStatusResponse, error) {
	sc, err := callerScope(ctx)
	if err != nil {
		return nil, err
	}
	mb, err := lookupMailbox(ctx, s.d.Repo, sc, req.GetName())
	if err != nil {
		return nil, s.fail(ctx, "mailbox status", err)
	}
	return &storev1.GetMailboxStatusResponse{Status: mailboxStatus(mb)}, nil
}

// SelectMailbox opens a mailbox (SELECT/EXAMINE, RFC 9051 §6.3.2–3): the
// state row, the \Recent claim, the UID list as ranges and the keywords,
// four short statements and no transaction held across them.
//
// The UID list is read after the state row; a message delivered in
// between is left out (its UID is not below the UIDNEXT sent), so the
// session sees a consistent snapshot and learns of the newcomer from the
// event. MESSAGES is the length of the list sent, for the same reason.
func (s *MailboxServer) SelectMailbox(ctx context.Context, req *storev1.SelectMailboxRequest) (*storev1.SelectMailboxResponse, error) {
	sc, err := callerScope(ctx)
	if err != nil {
		return nil, err
	}
	mb, err := lookupMailbox(ctx, s.d.Repo, sc, req.GetName())
	if err != nil {
		return nil, s.fail(ctx, "select", err)
	}
	if mb.NoSelect {
		return nil, s.fail(ctx, "select", repo.ErrNoSelect)
	}
	var firstRecent uint32
	if req.GetReadOnly() {
		// EXAMINE shows \Recent without claiming it (RFC 3501 §6.3.2).
		if mb.RecentUID+1 < mb.UIDNext {
			firstRecent = mb.RecentUID + 1
		}
	} else if firstRecent, err = s.d.Repo.ClaimRecent(ctx, sc, mb.ID); err != nil {
		return nil, s.fail(ctx, "select: claim recent", err)
	}
	ranges, err := s.d.Repo.UIDs(ctx, sc, mb.ID)
	if err != nil {
		return nil, s.fail(ctx, "select: uids", err)
	}
	keywords, err := s.d.Repo.Keywords(ctx, sc)
	if err != nil {
		return nil, s.fail(ctx, "select: keywords", err)
	}
	var count, recent int64
	clipped := ranges[:0]
	for _, r := range ranges {
		if r.Start >= mb.UIDNext {
			break
		}
		r.Stop = min(r.Stop, mb.UIDNext-1)
		clipped = append(clipped, r)
		count += int64(r.Stop-r.Start) + 1
		if firstRecent != 0 && r.Stop >= firstRecent {
			recent += int64(r.Stop-max(r.Start, firstRecent)) + 1
		}
	}
	if recent == 0 {
		firstRecent = 0
	}
	st := mailboxStatus(mb)
	st.Messages = uint32(count)
	st.Recent = uint32(recent)
	return &storev1.SelectMailboxResponse{
		Status: st, Keywords: keywords, Uids: rangesOf(clipped), FirstRecentUid: firstRecent,
	}, nil
}
