package pgrepo

// The SEARCH columns of object_meta (sent_day, search_words) are computed
// here, once per object, when mimeparse's output becomes the object row
// (migration 0050; 0020 computed them in SQL on every insert).

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/petrel-mail/petrel/services/store/internal/mimeparse"
	"github.com/petrel-mail/petrel/services/store/internal/repo"
)

// searchFields are object_meta's SEARCH columns for one object.
type searchFields struct {
	sentDay pgtype.Date // invalid (NULL) without a parsable Date:
	words   []string    // search_words, as array_to_tsvector's input
}

func newSearchFields(p *mimeparse.Parsed) searchFields {
	return searchFields{sentDay: sentDay(p.Date, p.Header), words: repo.SearchWords(p.Text)}
}

// zoneOffset finds the numeric zone after the time of day:
// "10:52[:37] +0200" or "+02:00".
var zoneOffset = regexp.MustCompile(`[0-9]:[0-9]{2}(?::[0-9]{2})?[ \t\r\n]*([+-])([0-9]{2}):?([0-9]{2})`)

// sentDay is the calendar day of the Date: header as written (SENTON and
// friends, see repo.Criteria): the parsed instant in UTC moved by the
// numeric zone offset of the first Date: field of the header. Obsolete
// zone names (GMT, EST, ...) and a missing offset count as +0000. This is
// what migration 0020's petrel_sent_day computed for the rows before 0050,
// so old and new rows agree; it does not depend on the process's local
// time zone, which time.Parse consults for zone names.
func sentDay(date time.Time, header []byte) pgtype.Date {
	if date.IsZero() {
		return pgtype.Date{}
	}
	t := date.UTC()
	if v := dateField(header); v != nil {
		if z := zoneOffset.FindSubmatch(v); z != nil {
			off := time.Duration((z[2][0]-'0')*10+z[2][1]-'0')*time.Hour +
				time.Duration((z[3][0]-'0')*10+z[3][1]-'0')*time.Minute
			if z[1][0] == '-' {
				off = -off
			}
			t = t.Add(off)
		}
	}
	y, m, d := t.Date()
	return pgtype.Date{Time: time.Date(y, m, d, 0, 0, 0, 0, time.UTC), Valid: true}
}

// dateField returns the value of the first "Date:" field of a raw header
// block, with its continuation lines (line breaks kept), or nil.
func dateField(h []byte) []byte {
	for i := 0; i < len(h); {
		line := h[i:]
		if len(line) >= 4 && bytes.EqualFold(line[:4], []byte("date")) {
			j := 4
			for j < len(line) && (line[j] == ' ' || line[j] == '\t') {
				j++
			}
			if j < len(line) && line[j] == ':' {
				v := line[j+1:]
				end := 0
				for {
					nl := bytes.IndexByte(v[end:], '\n')
					if nl < 0 {
						return v
					}
					end += nl
					if end+1 < len(v) && (v[end+1] == ' ' || v[end+1] == '\t') {
						end++
						continue
					}
					return v[:end]
				}
			}
		}
		nl := bytes.IndexByte(line, '\n')
		if nl < 0 {
			return nil
		}
		i += nl + 1
	}
	return nil
}

// CleanSearchIndex merges the SEARCH index's pending list into the index
// (migration 0070) and returns how many pending-list pages it emptied.
// Concurrent calls, from other store replicas too, wait for each other.
func (r *Repo) CleanSearchIndex(ctx context.Context) (int64, error) {
	var n int64
	if err := r.pool.QueryRow(ctx, `SELECT gin_clean_pending_list('object_meta_search_words'::regclass)`).Scan(&n); err != nil {
		return 0, fmt.Errorf("pgrepo: clean search index: %w", err)
	}
	return n, nil
}
