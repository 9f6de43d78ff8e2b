package lifecycle_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/petrel-mail/petrel/platform/config"
	"github.com/petrel-mail/petrel/platform/lifecycle"
	"github.com/petrel-mail/petrel/platform/logging"
)

type testConfig struct {
	Log   logging.Config
	Count int
}

func (c *testConfig) RegisterFlags(f *config.FlagSet) {
	c.Log.RegisterFlags(f)
	f.Int(&c.Count, "count", 1, "a positive number")
}

func (c testConfig) Validate() error {
	var v config.Validator
	v.Join(c.Log.Validate())
	if c.Count <= 0 {
		v.Add("count", "must be positive")
	}
	return v.Err()
}

func TestMain_ExitCodes(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		env      []string
		serveErr error
		code     int
		want     []string
		served   bool
	}{
		{name: "serves", code: 0, served: true},
		{name: "serve fails", serveErr: errors.New("boom"), code: 1, served: true, want: []string{"petrel-test failed", "boom"}},
		{name: "bad config lists every problem", args: []string{"--count=0"}, env: []string{"PETREL_LOG_FORMAT=xml"}, code: 2,
			want: []string{"petrel-test: bad configuration:", "--count: must be positive", "--log-format"}},
		{name: "check-config", args: []string{"--check-config"}, code: 0, want: []string{"petrel-test: configuration OK"}},
		{name: "help", args: []string{"--help"}, code: 0, want: []string{"--count"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var cfg testConfig
			var out bytes.Buffer
			served := false
			code := lifecycle.Main("test", &cfg, &cfg.Log, tc.args, tc.env, &out, func(*slog.Logger) error {
				served = true
				return tc.serveErr
			})
			if code != tc.code || served != tc.served {
				t.Fatalf("code %d served %v, want %d %v\n%s", code, served, tc.code, tc.served, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}
