package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/petrel-mail/petrel/platform/config"
)

func TestJSONWithServiceAndLevel(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, "smtp", Config{Format: FormatJSON, Level: "warn"})
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown", "n", 3)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one line above warn, got %q", buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["msg"] != "shown" || rec["service"] != "smtp" || rec["level"] != "WARN" || rec["n"] != float64(3) {
		t.Fatalf("record = %v", rec)
	}
}

func TestTextDebug(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, "imap", Config{Format: FormatText, Level: "DEBUG"})
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("hello")
	if got := buf.String(); !strings.Contains(got, "level=DEBUG") || !strings.Contains(got, "service=imap") || !strings.Contains(got, "msg=hello") {
		t.Fatalf("got %q", got)
	}
}

func TestFlagsAndValidate(t *testing.T) {
	var c Config
	f := config.New("pop3")
	c.RegisterFlags(f)
	if err := f.Parse(nil, []string{"PETREL_LOG_FORMAT=yaml", "PETREL_POP3_LOG_LEVEL=loud"}); err != nil {
		t.Fatal(err)
	}
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`--log-format: "yaml" is not one of`, `--log-level: "loud" is not a log level`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if _, err := New(&bytes.Buffer{}, "pop3", c); err == nil {
		t.Fatal("New accepted a bad config")
	}
}
