package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestMakeDev is issue 6's end-to-end test: `make dev` comes up and
// creates the demo account; petrelctl creates a domain and two accounts;
// swaks delivers through the MX port and is refused for an unknown user
// and a remote domain; a message submitted with AUTH on the submission
// port (plaintext from loopback, as local runs allow) reaches the other
// account; both are in the right INBOX according to the store. After a
// stop and a second start the data is still there and the demo account is
// not recreated. Then the crash test runs on the same deployment.
func TestMakeDev(t *testing.T) {
	d := newDeployment(t)
	d.start()
	out := d.out.String()

	// The demo account, with its credentials kept (0600) and printed with
	// commands that work against this deployment.
	creds := filepath.Join(d.data, "demo-credentials")
	fi, err := os.Stat(creds)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("demo credentials: %v %v", fi, err)
	}
	b, _ := os.ReadFile(creds)
	demoPassword := regexp.MustCompile(`DEMO_PASSWORD=(\S+)`).FindStringSubmatch(string(b))
	if demoPassword == nil {
		t.Fatalf("no password in %s:\n%s", creds, b)
	}
	_, mxPort := hostPort(d.addrs["smtp_mx"])
	for _, want := range []string{"demo@demo.test", demoPassword[1], "swaks --server 127.0.0.1 --port " + mxPort} {
		if !strings.Contains(out, want) {
			t.Fatalf("start-up output lacks %q:\n%s", want, out)
		}
	}
	d.petrelctl(0, "", "account", "show", "demo@demo.test")

	// Administration with petrelctl.
	d.petrelctl(0, "", "domain", "add", "e2e.test")
	d.petrelctl(0, "alice's long password\n", "account", "add", "alice@e2e.test", "--password-stdin")
	d.petrelctl(0, "bob's long password\n", "account", "add", "bob@e2e.test", "--password-stdin")

	// MX: accepted for a local account, refused for an unknown one and for
	// a remote domain (no open relay).
	if code, tr := d.swaks(d.addrs["smtp_mx"], "--from", "someone@example.org", "--to", "alice@e2e.test", "--header", "Subject: via MX"); code != 0 {
		t.Fatalf("swaks to alice via MX: exit %d\n%s", code, tr)
	}
	for _, rcpt := range []string{"nobody@e2e.test", "someone@example.com"} {
		code, tr := d.swaks(d.addrs["smtp_mx"], "--from", "someone@example.org", "--to", rcpt)
		if code == 0 || !regexp.MustCompile(`<\*\* +5\d\d `).MatchString(tr) {
			t.Fatalf("swaks to %s via MX: exit %d, want a 5xx refusal:\n%s", rcpt, code, tr)
		}
	}
	// Submission with AUTH from alice to bob.
	if code, tr := d.swaks(d.addrs["smtp_submission"], "--auth", "PLAIN", "--auth-user", "alice@e2e.test", "--auth-password", "alice's long password",
		"--from", "alice@e2e.test", "--to", "bob@e2e.test", "--header", "Subject: submitted by alice"); code != 0 {
		t.Fatalf("swaks submission as alice: exit %d\n%s", code, tr)
	}
	exactly := func(want ...string) func([]string) bool {
		return func(got []string) bool { return strings.Join(got, "|") == strings.Join(want, "|") }
	}
	d.waitInbox("alice@e2e.test", "alice's long password", time.Minute, exactly("via MX"))
	d.waitInbox("bob@e2e.test", "bob's long password", time.Minute, exactly("submitted by alice"))

	queueTest(t, d)

	// A second start reuses the data: same accounts and mail, the demo
	// account is not recreated.
	d.stop()
	d.start()
	b2, _ := os.ReadFile(creds)
	if string(b2) != string(b) {
		t.Fatalf("demo credentials changed on the second start:\n%s\n%s", b, b2)
	}
	d.petrelctl(4, "", "domain", "add", "e2e.test")
	if got, err := d.inbox(t.Context(), "bob@e2e.test", "bob's long password"); err != nil || strings.Join(got, "|") != "submitted by alice" {
		t.Fatalf("bob's INBOX after a restart: %q, %v", got, err)
	}

	t.Run("Crash", func(t *testing.T) { crashTest(t, d) })
	d.stop()
}

// queueTest: a message to a remote domain, submitted by alice, waits in
// the queue (the smarthost refuses connections); petrelctl lists, shows,
// retries and deletes it.
func queueTest(t *testing.T, d *deployment) {
	if code, tr := d.swaks(d.addrs["smtp_submission"], "--auth", "PLAIN", "--auth-user", "alice@e2e.test", "--auth-password", "alice's long password",
		"--from", "alice@e2e.test", "--to", "someone@remote.test", "--header", "Subject: to a remote domain"); code != 0 {
		t.Fatalf("swaks submission to a remote domain: exit %d\n%s", code, tr)
	}
	var id string
	deadline := time.Now().Add(2 * time.Minute)
	for id == "" {
		var items []struct {
			QueueID    string `json:"queue_id"`
			State      string `json:"state"`
			Sender     string `json:"sender"`
			Recipients []struct {
				Address string `json:"address"`
				Outcome string `json:"outcome"`
			} `json:"recipients"`
		}
		out := d.petrelctl(0, "", "queue", "list", "--state", "deferred", "--domain", "remote.test", "-o", "json")
		if err := json.Unmarshal([]byte(out), &items); err != nil {
			t.Fatalf("queue list -o json: %v\n%s", err, out)
		}
		for _, it := range items {
			if it.Sender == "alice@e2e.test" && len(it.Recipients) == 1 && it.Recipients[0].Address == "someone@remote.test" {
				if it.Recipients[0].Outcome != "deferred" {
					t.Fatalf("recipient outcome %q, want deferred", it.Recipients[0].Outcome)
				}
				id = it.QueueID
			}
		}
		if id == "" && time.Now().After(deadline) {
			t.Fatalf("the message to remote.test is not deferred in the queue:\n%s", d.petrelctl(0, "", "queue", "list"))
		}
		time.Sleep(200 * time.Millisecond) // polling the queue through the CLI
	}
	d.petrelctl(0, "", "queue", "list", "--state", "deferred", "--domain", "remote.test")
	out := d.petrelctl(0, "", "queue", "list")
	if !strings.Contains(out, "QUEUE ID") || !strings.Contains(out, id) {
		t.Fatalf("queue list:\n%s", out)
	}
	out = d.petrelctl(0, "", "queue", "show", id)
	for _, want := range []string{"queue id: " + id, "state:    deferred", "sender:   alice@e2e.test", "someone@remote.test"} {
		if !strings.Contains(out, want) {
			t.Fatalf("queue show lacks %q:\n%s", want, out)
		}
	}
	out = d.petrelctl(0, "", "queue", "counts", "-o", "json")
	var counts struct{ Active, Deferred int64 }
	if err := json.Unmarshal([]byte(out), &counts); err != nil || counts.Deferred < 1 {
		t.Fatalf("queue counts: %v\n%s", err, out)
	}
	d.petrelctl(0, "", "queue", "retry", id)
	d.petrelctl(0, "", "queue", "delete", id)
	d.petrelctl(3, "", "queue", "show", id)
	d.petrelctl(3, "", "queue", "delete", id)
}
