package server

import (
	"context"
	"errors"
	"time"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"

	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

// Search evaluates a SEARCH criteria tree over a mailbox (RFC 9051
// §6.4.4; MODSEQ, RFC 7162 §3.1.5) in one repository statement. A
// malformed tree (unknown or missing key, NOT/AND/OR without operands, a
// bad date or header name, deeper than repo.MaxSearchDepth or with more
// than repo.MaxSearchNodes nodes) is INVALID_ARGUMENT.
func (s *MessageServer) Search(ctx context.Context, req *storev1.SearchRequest) (*storev1.SearchResponse, error) {
	sc, err := callerScope(ctx)
	if err != nil {
		return nil, err
	}
	c, err := searchCriteria(req.GetCriteria())
	if err != nil {
		return nil, s.fail(ctx, "search", err)
	}
	mb, err := lookupMailbox(ctx, s.d.Repo, sc, req.GetMailbox())
	if err != nil {
		return nil, s.fail(ctx, "search", err)
	}
	uids, highest, err := s.d.Repo.Search(ctx, sc, mb.ID, c)
	if errors.Is(err, repo.ErrInvalidSearch) {
		err = invalid("invalid search criteria")
	}
	if err != nil {
		return nil, s.fail(ctx, "search", err)
	}
	return &storev1.SearchResponse{Uids: uids, HighestModseq: highest}, nil
}

// searchCriteria translates a request's tree, counting depth and nodes as
// it goes so that a hostile tree is refused before it is walked further;
// repo's Validate then checks the result once more.
func searchCriteria(k *storev1.SearchKey) (*repo.Criteria, error) {
	nodes := 0
	c, err := searchNode(k, 1, &nodes)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, invalid("invalid search criteria")
	}
	return c, nil
}

func searchNode(k *storev1.SearchKey, depth int, nodes *int) (*repo.Criteria, error) {
	if k == nil || k.GetKey() == nil {
		return nil, invalid("empty search key")
	}
	if depth > repo.MaxSearchDepth {
		return nil, invalid("search criteria nested too deeply")
	}
	if *nodes++; *nodes > repo.MaxSearchNodes {
		return nil, invalid("too many search keys")
	}
	children := func(keys []*storev1.SearchKey) ([]*repo.Criteria, error) {
		if len(keys) == 0 {
			return nil, invalid("AND/OR without operands")
		}
		out := make([]*repo.Criteria, len(keys))
		for i, ch := range keys {
			c, err := searchNode(ch, depth+1, nodes)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	}
	switch v := k.GetKey().(type) {
	case *storev1.SearchKey_All:
		return &repo.Criteria{Op: repo.SearchAll}, nil
	case *storev1.SearchKey_And:
		cs, err := children(v.And.GetKeys())
		return &repo.Criteria{Op: repo.SearchAnd, Children: cs}, err
	case *storev1.SearchKey_Or:
		cs, err := children(v.Or.GetKeys())
		return &repo.Criteria{Op: repo.SearchOr, Children: cs}, err
	case *storev1.SearchKey_Not:
		c, err := searchNode(v.Not, depth+1, nodes)
		return &repo.Criteria{Op: repo.SearchNot, Children: []*repo.Criteria{c}}, err
	case *storev1.SearchKey_Flag:
		return &repo.Criteria{Op: repo.SearchFlag, Flag: v.Flag}, nil
	case *storev1.SearchKey_Uids:
		var set repo.UIDSet
		for _, r := range v.Uids.GetRanges() {
			// 0 is '*' at either end (common.proto: stop 0 means '*').
			set = append(set, repo.UIDRange{Start: r.GetStart(), Stop: r.GetStop()})
		}
		return &repo.Criteria{Op: repo.SearchUIDs, UIDs: set}, nil
	case *storev1.SearchKey_Header:
		return &repo.Criteria{Op: repo.SearchHeader, Field: v.Header.GetField(), Value: v.Header.GetValue()}, nil
	case *storev1.SearchKey_Body:
		return &repo.Criteria{Op: repo.SearchBody, Value: v.Body}, nil
	case *storev1.SearchKey_Text:
		return &repo.Criteria{Op: repo.SearchText, Value: v.Text}, nil
	case *storev1.SearchKey_InternalDate:
		return dateCriteria(repo.SearchInternalDate, v.InternalDate)
	case *storev1.SearchKey_SentDate:
		return dateCriteria(repo.SearchSentDate, v.SentDate)
	case *storev1.SearchKey_Larger:
		return &repo.Criteria{Op: repo.SearchLarger, Size: v.Larger}, nil
	case *storev1.SearchKey_Smaller:
		return &repo.Criteria{Op: repo.SearchSmaller, Size: v.Smaller}, nil
	case *storev1.SearchKey_Modseq:
		return &repo.Criteria{Op: repo.SearchModSeq, ModSeq: v.Modseq}, nil
	case *storev1.SearchKey_Recent:
		return &repo.Criteria{Op: repo.SearchRecent}, nil
	}
	return nil, invalid("unknown search key")
}

var dateOps = map[string]repo.DateOp{"before": repo.DateBefore, "on": repo.DateOn, "since": repo.DateSince}

// dateCriteria reads a DateMatch: op "before", "on" or "since" and a
// YYYY-MM-DD date (the IMAP frontend converts RFC 9051's date format).
func dateCriteria(op repo.SearchOp, d *storev1.DateMatch) (*repo.Criteria, error) {
	dop, ok := dateOps[d.GetOp()]
	if !ok {
		return nil, invalid(`date comparison must be "before", "on" or "since"`)
	}
	t, err := time.Parse(time.DateOnly, d.GetDate())
	if err != nil {
		return nil, invalid("date must be YYYY-MM-DD")
	}
	return &repo.Criteria{Op: op, DateOp: dop, Date: t}, nil
}
