package cli

import (
	"context"
	"flag"
)

// The delivery service has no queue admin API yet (there is no
// proto/petrel/delivery/v1/queue_admin.proto to call), so the queue
// commands validate their arguments and then say so plainly instead of
// pretending.
func init() {
	for _, c := range []struct {
		path, args, summary string
		min, max            int
	}{
		{"queue list", "[--domain DOMAIN]", "list queued messages", 0, 0},
		{"queue show", "ID", "show a queued message and its recipients' state", 1, 1},
		{"queue retry", "ID|--all", "retry a deferred message now", 0, 1},
		{"queue delete", "ID", "delete a queued message without bouncing it", 1, 1},
		{"queue counts", "", "count queued messages by state", 0, 0},
	} {
		register(&command{path: c.path, args: c.args, summary: c.summary, minArgs: c.min, maxArgs: c.max,
			setup: func(fs *flag.FlagSet) runFunc {
				fs.String("domain", "", "only messages to this domain")
				fs.Bool("all", false, "every deferred message")
				return func(context.Context, *invocation) error {
					return exitError{ExitError, "not available: the delivery service has no queue admin API yet"}
				}
			}})
	}
}
