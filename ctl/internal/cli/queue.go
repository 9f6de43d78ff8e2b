package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	deliveryv1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/delivery/v1"
)

// DefaultQueueServer is where `make run` starts the delivery service's
// gRPC API (QueueAdminService).
const DefaultQueueServer = "127.0.0.1:7071"

type (
	queueRecipientJSON struct {
		Address       string     `json:"address"`
		Local         bool       `json:"local"`
		Outcome       string     `json:"outcome"`
		Attempts      int32      `json:"attempts"`
		LastReply     string     `json:"last_reply,omitempty"`
		LastAttemptAt *time.Time `json:"last_attempt_at,omitempty"`
		RemoteMTA     string     `json:"remote_mta,omitempty"`
	}
	queueItemJSON struct {
		QueueID       string               `json:"queue_id"`
		State         string               `json:"state"`
		Sender        string               `json:"sender"`
		Size          int64                `json:"size"`
		ReceivedAt    *time.Time           `json:"received_at,omitempty"`
		Attempts      int32                `json:"attempts"`
		NextAttemptAt *time.Time           `json:"next_attempt_at,omitempty"`
		Recipients    []queueRecipientJSON `json:"recipients"`
	}
	queueCountsJSON struct {
		Active   int64 `json:"active"`
		Deferred int64 `json:"deferred"`
	}
	queueDoneJSON struct {
		QueueID string `json:"queue_id"`
		Action  string `json:"action"`
	}
)

// lowerEnum turns QUEUE_STATE_DEFERRED into "deferred".
func lowerEnum(name, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(name, prefix))
}

func queueItemOf(it *deliveryv1.QueueItem) queueItemJSON {
	e := it.GetEntry()
	sender := e.GetMailFrom()
	if sender == "" {
		sender = "<>"
	}
	out := queueItemJSON{
		QueueID: e.GetQueueId(), State: lowerEnum(it.GetState().String(), "QUEUE_STATE_"), Sender: sender,
		Size: e.GetSize(), ReceivedAt: jsonTime(e.GetReceivedAt()), Attempts: it.GetAttempts(),
		NextAttemptAt: jsonTime(it.GetNextAttemptAt()), Recipients: []queueRecipientJSON{},
	}
	for i, r := range e.GetRecipients() {
		rj := queueRecipientJSON{Address: r.GetAddress(), Local: r.GetLocal(), Outcome: "pending"}
		// RecipientState is one per recipient in RCPT order; an ACTIVE
		// entry not yet attempted may have none.
		if i < len(it.GetRecipients()) {
			st := it.GetRecipients()[i]
			rj.Outcome = lowerEnum(st.GetOutcome().String(), "RECIPIENT_OUTCOME_")
			rj.Attempts, rj.LastReply, rj.RemoteMTA = st.GetAttempts(), st.GetLastReply(), st.GetRemoteMta()
			rj.LastAttemptAt = jsonTime(st.GetLastAttemptAt())
		}
		out.Recipients = append(out.Recipients, rj)
	}
	return out
}

func humanJSONTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

func queueRows(items []queueItemJSON) [][]string {
	var rows [][]string
	for _, it := range items {
		rcpts := "-"
		if n := len(it.Recipients); n > 0 {
			rcpts = it.Recipients[0].Address
			if n > 1 {
				rcpts += fmt.Sprintf(" (+%d)", n-1)
			}
		}
		rows = append(rows, []string{it.QueueID, it.State, it.Sender, rcpts, formatBytes(it.Size, 10),
			humanJSONTime(it.ReceivedAt), strconv.Itoa(int(it.Attempts)), humanJSONTime(it.NextAttemptAt)})
	}
	return rows
}

// queueFlag registers --queue-server on a queue command; empty means
// PETREL_QUEUE_SERVER, else DefaultQueueServer.
func queueFlag(fs *flag.FlagSet) *string {
	return fs.String("queue-server", "", "delivery service gRPC address (env PETREL_QUEUE_SERVER; default "+DefaultQueueServer+")")
}

func (inv *invocation) queue(server string) (deliveryv1.QueueAdminServiceClient, error) {
	if server == "" {
		server = inv.app.Getenv("PETREL_QUEUE_SERVER")
	}
	if server == "" {
		server = DefaultQueueServer
	}
	conn, err := inv.dial("the delivery service", server)
	if err != nil {
		return nil, err
	}
	return deliveryv1.NewQueueAdminServiceClient(conn), nil
}

// listQueue reads every page of a listing.
func listQueue(ctx context.Context, q deliveryv1.QueueAdminServiceClient, req *deliveryv1.ListQueueEntriesRequest) ([]*deliveryv1.QueueItem, error) {
	var items []*deliveryv1.QueueItem
	req.PageSize = 1000
	for {
		resp, err := q.ListQueueEntries(ctx, req)
		if err != nil {
			return nil, err
		}
		items = append(items, resp.GetItems()...)
		if resp.GetNextPageToken() == "" {
			return items, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

func parseState(s string) (deliveryv1.QueueState, error) {
	switch strings.ToLower(s) {
	case "", "all":
		return deliveryv1.QueueState_QUEUE_STATE_UNSPECIFIED, nil
	case "active":
		return deliveryv1.QueueState_QUEUE_STATE_ACTIVE, nil
	case "deferred":
		return deliveryv1.QueueState_QUEUE_STATE_DEFERRED, nil
	}
	return 0, usagef("--state must be active, deferred or all, not %q", s)
}

func init() {
	register(
		&command{path: "queue list", args: "[--state active|deferred] [--domain DOMAIN] [--sender ADDRESS]", summary: "list queued messages", maxArgs: 0,
			setup: func(fs *flag.FlagSet) runFunc {
				server := queueFlag(fs)
				state := fs.String("state", "all", "only entries in this state: active, deferred or all")
				domain := fs.String("domain", "", "only entries with a recipient in this domain")
				sender := fs.String("sender", "", "only entries from this envelope sender (<> for bounces)")
				return func(ctx context.Context, inv *invocation) error {
					st, err := parseState(*state)
					if err != nil {
						return err
					}
					q, err := inv.queue(*server)
					if err != nil {
						return err
					}
					items, err := listQueue(ctx, q, &deliveryv1.ListQueueEntriesRequest{State: st, RecipientDomain: *domain, Sender: *sender})
					if err != nil {
						return err
					}
					out := []queueItemJSON{}
					for _, it := range items {
						out = append(out, queueItemOf(it))
					}
					return inv.out.result(out, func(w io.Writer) {
						table(w, []string{"QUEUE ID", "STATE", "SENDER", "RECIPIENTS", "SIZE", "RECEIVED", "ATTEMPTS", "NEXT ATTEMPT"}, queueRows(out))
					})
				}
			}},
		&command{path: "queue show", args: "QUEUE-ID", summary: "show a queued message and each recipient's state", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				server := queueFlag(fs)
				return func(ctx context.Context, inv *invocation) error {
					inv.what = inv.args[0]
					q, err := inv.queue(*server)
					if err != nil {
						return err
					}
					resp, err := q.GetQueueEntry(ctx, &deliveryv1.GetQueueEntryRequest{QueueId: inv.args[0]})
					if err != nil {
						return err
					}
					it := queueItemOf(resp.GetItem())
					return inv.out.result(it, func(w io.Writer) {
						for _, r := range [][2]string{
							{"queue id:", it.QueueID}, {"state:", it.State}, {"sender:", it.Sender},
							{"size:", formatBytes(it.Size, 10)}, {"received:", humanJSONTime(it.ReceivedAt)},
							{"attempts:", strconv.Itoa(int(it.Attempts))}, {"next:", humanJSONTime(it.NextAttemptAt)},
						} {
							fmt.Fprintf(w, "%-10s%s\n", r[0], r[1])
						}
						fmt.Fprintln(w)
						var rows [][]string
						for _, r := range it.Recipients {
							reply := r.LastReply
							if r.RemoteMTA != "" {
								reply += " (" + r.RemoteMTA + ")"
							}
							rows = append(rows, []string{r.Address, r.Outcome, strconv.Itoa(int(r.Attempts)), reply})
						}
						table(w, []string{"RECIPIENT", "OUTCOME", "ATTEMPTS", "LAST REPLY"}, rows)
					})
				}
			}},
		&command{path: "queue retry", args: "QUEUE-ID | --all", summary: "make deferred messages due now (postqueue -i)", maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				server := queueFlag(fs)
				all := fs.Bool("all", false, "every deferred message")
				return func(ctx context.Context, inv *invocation) error {
					if *all == (len(inv.args) == 1) {
						return usagef("give a queue id or --all")
					}
					q, err := inv.queue(*server)
					if err != nil {
						return err
					}
					ids := inv.args
					if *all {
						items, err := listQueue(ctx, q, &deliveryv1.ListQueueEntriesRequest{State: deliveryv1.QueueState_QUEUE_STATE_DEFERRED})
						if err != nil {
							return err
						}
						for _, it := range items {
							ids = append(ids, it.GetEntry().GetQueueId())
						}
					}
					out := []queueDoneJSON{}
					for _, id := range ids {
						inv.what = id
						if _, err := q.RetryQueueEntry(ctx, &deliveryv1.RetryQueueEntryRequest{QueueId: id}); err != nil {
							return err
						}
						out = append(out, queueDoneJSON{QueueID: id, Action: "retry"})
					}
					return inv.out.result(out, func(w io.Writer) {
						for _, d := range out {
							fmt.Fprintf(w, "retrying %s now\n", d.QueueID)
						}
						if len(out) == 0 {
							fmt.Fprintln(w, "no deferred messages")
						}
					})
				}
			}},
		&command{path: "queue delete", args: "QUEUE-ID", summary: "delete a queued message without a bounce (postsuper -d)", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				server := queueFlag(fs)
				return func(ctx context.Context, inv *invocation) error {
					inv.what = inv.args[0]
					q, err := inv.queue(*server)
					if err != nil {
						return err
					}
					if _, err := q.DeleteQueueEntry(ctx, &deliveryv1.DeleteQueueEntryRequest{QueueId: inv.args[0]}); err != nil {
						return err
					}
					return inv.out.result(queueDoneJSON{QueueID: inv.args[0], Action: "delete"}, func(w io.Writer) {
						fmt.Fprintf(w, "deleted %s from the queue\n", inv.args[0])
					})
				}
			}},
		&command{path: "queue counts", summary: "count queued messages by state", maxArgs: 0,
			setup: func(fs *flag.FlagSet) runFunc {
				server := queueFlag(fs)
				return func(ctx context.Context, inv *invocation) error {
					q, err := inv.queue(*server)
					if err != nil {
						return err
					}
					resp, err := q.CountQueueEntries(ctx, &deliveryv1.CountQueueEntriesRequest{})
					if err != nil {
						return err
					}
					out := queueCountsJSON{Active: resp.GetActive(), Deferred: resp.GetDeferred()}
					return inv.out.result(out, func(w io.Writer) {
						table(w, []string{"STATE", "MESSAGES"}, [][]string{{"active", strconv.FormatInt(out.Active, 10)}, {"deferred", strconv.FormatInt(out.Deferred, 10)}})
					})
				}
			}},
	)
}
