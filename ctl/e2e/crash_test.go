package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	crashMessages = 1000
	crashSessions = 8
	// The load is paced at crashChunk messages per crashPace (50/s):
	// unpaced, smtp-source sends the 1,000 in a few seconds, before run.sh
	// has restarted the delivery process twice (each restart takes
	// seconds), so the later kills would come after the load.
	crashChunk = 10
	crashPace  = 200 * time.Millisecond
)

var (
	// petrel-smtp logs this line for every message it answers 250, with
	// the queue id it also puts in the Received: field it prepends
	// (services/smtp/internal/server/session.go, ingest/received.go).
	acceptedLog = regexp.MustCompile(`(?m)^\[smtp\] .*msg="message accepted" .*listener=mx .*queue_id=([0-9A-Za-z]{26})\b`)
	// smtp-source -v prints every command it sends and every reply.
	sourceMail = regexp.MustCompile(`smtp-source: MAIL FROM:`)
	sourceOK   = regexp.MustCompile(`smtp-source: <<< 250 .*queued as ([0-9A-Za-z]{26})\b`)
	sourceLost = regexp.MustCompile(`smtp-source: fatal: lost connection`)
	// Petrel's trace field, unfolded by net/mail.
	petrelReceived = regexp.MustCompile(`\(Petrel\) with \S+ id ([0-9A-Za-z]{26})\b`)
)

// crashTest is issue 6's crash test: Postfix's smtp-source sends
// crashMessages through the MX port while the delivery process is killed
// with SIGKILL twice and the smtp process once (run.sh restarts them).
// Then every message petrel-smtp answered 250 must be in the INBOX exactly
// once and no message may be there twice.
//
// smtp-source sends identical messages and reports no per-message outcome
// (only its -v trace shows the replies), so the accounting uses queue ids: petrel-smtp logs each 250 with its queue
// id, and the same id is in the Received: field of the stored message.
// The log is the server's side of the 250s; smtp-source -v prints the
// replies it read ("250 ... queued as ID"), the client's side, which must
// be a subset of it (smtp can be killed between logging and replying).
func crashTest(t *testing.T, d *deployment) {
	parent := d.t
	d.t = t
	defer func() { d.t = parent }()
	const rcpt, password = "crash@e2e.test", "crash test password"
	d.petrelctl(0, password+"\n", "account", "add", rcpt, "--password-stdin")

	// The queue ids smtp logged as accepted since now, read
	// incrementally up to the last complete line.
	pos := d.out.len()
	var ids []string
	accepted := func() []string {
		s := d.out.from(pos)
		s = s[:strings.LastIndexByte(s, '\n')+1]
		pos += len(s)
		for _, m := range acceptedLog.FindAllStringSubmatch(s, -1) {
			ids = append(ids, m[1])
		}
		return ids
	}

	began := time.Now()
	loadDone := make(chan sourceLoad, 1)
	dataSent := make(chan struct{}, 1)
	go func() { loadDone <- runSmtpSource(d.addrs["smtp_mx"], d.addrs["smtp_metrics"], rcpt, dataSent) }()

	// Kill while messages flow, when the smtp log shows 15% and 40% of
	// the messages accepted (delivery) and 65% (smtp), each time waiting
	// until run.sh has restarted the process and it is ready. smtp is
	// killed right after smtp-source has sent the end of a message's
	// data, so that at least that transaction is cut while smtp stores,
	// queues or answers it.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	kills := []struct {
		at      int
		service string
		ready   string
	}{
		{crashMessages * 15 / 100, "delivery", d.addrs["delivery_metrics"]},
		{crashMessages * 40 / 100, "delivery", d.addrs["delivery_metrics"]},
		{crashMessages * 65 / 100, "smtp", d.addrs["smtp_metrics"]},
	}
	for _, k := range kills {
		for len(accepted()) < k.at {
			select {
			case load := <-loadDone:
				t.Fatalf("smtp-source finished (%d attempted) with %d accepted before the %s kill at %d: %v", load.attempted, len(accepted()), k.service, k.at, load.err)
			case <-tick.C:
			}
		}
		if k.service == "smtp" {
			select {
			case <-dataSent: // an old one
			default:
			}
			select {
			case load := <-loadDone:
				t.Fatalf("smtp-source finished (%d attempted) before the smtp kill: %v", load.attempted, load.err)
			case <-dataSent:
			}
		}
		d.sigkill(k.service, k.ready)
	}
	load := <-loadDone
	if load.err != nil {
		t.Fatalf("smtp-source: %v (%d attempted in %d runs)", load.err, load.attempted, load.runs)
	}
	accepted()
	t.Logf("smtp-source: %d messages attempted in %d runs (%d failed, %d of them on a lost connection) in %s; smtp logged %d accepted, smtp-source read %d 250 replies",
		load.attempted, load.runs, load.failed, load.lost, time.Since(began).Round(time.Second), len(ids), len(load.ok))
	if load.failed == 0 {
		t.Errorf("no smtp-source run failed although smtp was killed during the load")
	}
	if len(ids) < crashMessages/2 {
		t.Fatalf("only %d of %d messages got a 250", len(ids), crashMessages)
	}
	isAccepted := map[string]bool{}
	for _, id := range ids {
		if isAccepted[id] {
			t.Errorf("queue id %s accepted twice", id)
		}
		isAccepted[id] = true
	}
	for id := range load.ok {
		if !isAccepted[id] {
			t.Errorf("smtp-source got a 250 for %s, which smtp did not log as accepted", id)
		}
	}

	// Wait until every accepted message is there and the queue is empty
	// (so that nothing, not even a message whose 250 was lost, is still
	// on its way), then count.
	receivedID := func(h mail.Header) string {
		for _, v := range h["Received"] {
			if m := petrelReceived.FindStringSubmatch(v); m != nil {
				return m[1]
			}
		}
		return ""
	}
	allThere := func(got []string) bool {
		have := map[string]bool{}
		for _, id := range got {
			have[id] = true
		}
		for _, id := range ids {
			if !have[id] {
				return false
			}
		}
		return true
	}
	d.waitInboxKeys(rcpt, password, 5*time.Minute, receivedID, allThere)
	t.Logf("all accepted messages delivered %s after the first was sent", time.Since(began).Round(time.Second))
	d.waitQueueEmpty(2 * time.Minute)
	t.Logf("queue empty %s after the first was sent", time.Since(began).Round(time.Second))
	got, err := d.inboxKeys(t.Context(), rcpt, password, receivedID)
	if err != nil {
		t.Fatal(err)
	}

	count := map[string]int{}
	for _, id := range got {
		if id == "" {
			t.Errorf("a message in the INBOX has no Received: field of Petrel's")
		}
		count[id]++
	}
	var dup, unlogged []string
	for id, c := range count {
		if c > 1 {
			dup = append(dup, fmt.Sprintf("%s ×%d (accepted: %v)", id, c, isAccepted[id]))
		}
		if !isAccepted[id] {
			unlogged = append(unlogged, id)
		}
	}
	sort.Strings(dup)
	if len(dup) > 0 {
		t.Errorf("%d messages are in the INBOX more than once: %s", len(dup), strings.Join(dup, ", "))
	}
	if len(count) > load.attempted {
		t.Errorf("%d distinct messages in the INBOX, but only %d were attempted", len(count), load.attempted)
	}
	inboxAccepted := 0
	for _, id := range ids {
		if count[id] >= 1 {
			inboxAccepted++
		}
	}
	t.Logf("%d attempted, %d accepted (250 logged), %d of them in the INBOX, %d messages in the INBOX, %d duplicates; %d delivered without a logged 250 (allowed once: smtp killed between queueing and replying)",
		load.attempted, len(ids), inboxAccepted, len(got), len(dup), len(unlogged))
}

// sourceLoad is what runSmtpSource did.
type sourceLoad struct {
	attempted int             // transactions started (MAIL FROM sent)
	ok        map[string]bool // queue ids of the 250 replies smtp-source read
	runs      int             // smtp-source invocations
	failed    int             // invocations that ended in an error
	lost      int             // failed ones that lost a session
	err       error
}

// runSmtpSource runs smtp-source, crashChunk messages per crashPace,
// until crashMessages transactions were started. smtp-source gives up on
// the first broken session or refused connection (the smtp kill causes
// both), so it runs again for the rest once smtp is ready. It reads
// smtp-source's output as it comes and signals dataSent (without
// blocking) each time a message's data was sent. It runs in its own
// goroutine, so it reports rather than fails the test.
func runSmtpSource(addr, smtpMetrics, rcpt string, dataSent chan<- struct{}) sourceLoad {
	load := sourceLoad{ok: map[string]bool{}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pace := time.NewTicker(crashPace)
	defer pace.Stop()
	for load.attempted < crashMessages {
		if load.failed > 10 {
			load.err = fmt.Errorf("%d smtp-source runs failed", load.failed)
			return load
		}
		// -A: go on after a 4xx/5xx reply (only a lost session or a
		// refused connection stops it); -v: print the commands and
		// replies, the client's side of the accounting.
		cmd := exec.CommandContext(ctx, "smtp-source", "-v", "-A",
			"-s", strconv.Itoa(crashSessions), "-m", strconv.Itoa(min(crashChunk, crashMessages-load.attempted)), "-l", "2000",
			"-M", "crash.example.org", "-f", "sender@example.org", "-t", rcpt, addr)
		r, w, err := os.Pipe()
		if err != nil {
			load.err = err
			return load
		}
		cmd.Stdout, cmd.Stderr = w, w
		err = cmd.Start()
		w.Close()
		if err != nil {
			r.Close()
			load.err = fmt.Errorf("start smtp-source: %w", err)
			return load
		}
		load.runs++
		lost := false
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case sourceMail.MatchString(line):
				load.attempted++
			case strings.HasSuffix(line, "smtp-source: ."):
				select {
				case dataSent <- struct{}{}:
				default:
				}
			case sourceLost.MatchString(line):
				lost = true
			default:
				if m := sourceOK.FindStringSubmatch(line); m != nil {
					load.ok[m[1]] = true
				}
			}
		}
		r.Close()
		err = cmd.Wait()
		if ctx.Err() != nil {
			load.err = fmt.Errorf("smtp-source still running after 5m: %w", ctx.Err())
			return load
		}
		if err != nil {
			load.failed++
			if lost {
				load.lost++
			}
			if err := pollReady(ctx, smtpMetrics); err != nil {
				load.err = fmt.Errorf("smtp not ready after smtp-source failed: %w", err)
				return load
			}
		}
		select {
		case <-pace.C:
		case <-ctx.Done():
		}
	}
	return load
}

// pollReady polls /readyz until it answers 200 or ctx ends.
func pollReady(ctx context.Context, addr string) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !ready(addr) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// waitQueueEmpty polls the queue counters through petrelctl until no
// message is active or deferred.
func (d *deployment) waitQueueEmpty(timeout time.Duration) {
	t := d.t
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		out := d.petrelctl(0, "", "queue", "counts", "-o", "json")
		var counts struct{ Active, Deferred int64 }
		if err := json.Unmarshal([]byte(out), &counts); err != nil {
			t.Fatalf("queue counts: %v\n%s", err, out)
		}
		if counts.Active == 0 && counts.Deferred == 0 {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("queue not empty after %s: %s", timeout, out)
		case <-tick.C:
		}
	}
}

// sigkill kills a service with SIGKILL through run.sh's pid file and
// waits until run.sh has started a new one and it is ready.
func (d *deployment) sigkill(service, metrics string) {
	t := d.t
	t.Helper()
	file := filepath.Join(d.data, "run", service+".pid")
	pid, err := readPid(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s (%d): %v", service, pid, err)
	}
	deadline := time.NewTimer(2 * time.Minute)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if p, err := readPid(file); err == nil && p != pid && syscall.Kill(p, 0) == nil {
			break
		}
		select {
		case <-deadline.C:
			t.Fatalf("%s was not restarted after SIGKILL", service)
		case <-tick.C:
		}
	}
	waitReady(t, metrics)
	if _, err := os.Stat(file); err != nil {
		t.Fatal(err)
	}
}
