package dnsrecords

import (
	"reflect"
	"testing"
)

func TestFor(t *testing.T) {
	got, err := For("Example.Test.", Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Record{
		{Name: "example.test", Type: "MX", Priority: 10, Value: "mail.example.test"},
		{Name: "example.test", Type: "TXT", Value: "v=spf1 mx -all"},
		{Name: "_dmarc.example.test", Type: "TXT", Value: "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.test"},
	}
	for i := range got {
		if got[i].Purpose == "" {
			t.Errorf("record %d has no purpose", i)
		}
		got[i].Purpose = ""
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}

	got, err = For("example.test", Options{MXHost: "mx.petrel.test.", DMARCPolicy: "reject", ReportAddress: "dmarc@reports.test"})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Value != "mx.petrel.test" || got[2].Value != "v=DMARC1; p=reject; rua=mailto:dmarc@reports.test" {
		t.Fatalf("options not applied: %+v", got)
	}
}

func TestForRejects(t *testing.T) {
	for _, tc := range []struct {
		domain string
		opts   Options
	}{
		{"", Options{}},
		{"localhost", Options{}},
		{"bob@example.test", Options{}},
		{"example.test", Options{DMARCPolicy: "block"}},
		{"example.test", Options{ReportAddress: "a@b; p=none"}},
		{"example.test", Options{ReportAddress: "nobody"}},
	} {
		if _, err := For(tc.domain, tc.opts); err == nil {
			t.Errorf("For(%q, %+v) accepted", tc.domain, tc.opts)
		}
	}
}
