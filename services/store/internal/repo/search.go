package repo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrInvalidSearch: a malformed SEARCH criteria tree (RFC 9051 §6.4.4):
// a NOT without exactly one operand, an empty AND/OR, a tree deeper than
// MaxSearchDepth or larger than MaxSearchNodes, an invalid header field
// name, a negative size, or a string with a NUL octet or invalid UTF-8.
var ErrInvalidSearch = errors.New("repo: invalid search criteria")

// Bounds on a criteria tree, so that one SEARCH cannot build an
// unbounded SQL statement.
const (
	MaxSearchDepth  = 64
	MaxSearchNodes  = 1024
	MaxSearchString = 4096 // bytes of one search string
)

// SearchOp is the kind of a criteria node.
type SearchOp int

// Criteria node kinds, mirroring storev1.SearchKey (RFC 9051 §6.4.4,
// RFC 7162 §3.1.5 MODSEQ).
const (
	SearchAll          SearchOp = iota // ALL
	SearchAnd                          // every child (a search-key list)
	SearchOr                           // any child (OR a b; more than two allowed)
	SearchNot                          // NOT: exactly one child
	SearchFlag                         // Flag: a system flag ("\Seen") or keyword is set
	SearchUIDs                         // UIDs (0 in a range stands for '*')
	SearchHeader                       // HEADER Field Value; FROM/TO/CC/BCC/SUBJECT too
	SearchBody                         // BODY Value
	SearchText                         // TEXT Value
	SearchInternalDate                 // BEFORE/ON/SINCE Date
	SearchSentDate                     // SENTBEFORE/SENTON/SENTSINCE Date
	SearchLarger                       // LARGER Size
	SearchSmaller                      // SMALLER Size
	SearchModSeq                       // MODSEQ ModSeq: modseq >= ModSeq
	SearchRecent                       // RECENT: above the mailbox's \Recent watermark
)

// DateOp compares a message's date with Criteria.Date, by calendar day.
type DateOp int

// Date comparisons (RFC 9051 §6.4.4: BEFORE, ON, SINCE).
const (
	DateBefore DateOp = iota // day < Date
	DateOn                   // day = Date
	DateSince                // day >= Date
)

// Criteria is one node of a SEARCH criteria tree. Which fields count
// depends on Op.
//
// Date semantics: only the calendar day of Date (its year, month and day
// as written, whatever its location) is used. The internal date is
// compared by its day in UTC, the store's time zone for RFC 9051's
// "disregarding time and timezone". The sent date is compared by the day
// written in the Date: header, in the header's own zone (RFC 5322
// date-time with its offset; obsolete zone names count as +0000); a
// message without a parsable Date: header matches no SENT* key.
//
// String semantics: case-insensitive substring matches (RFC 9051 §6.4.4).
// FROM, TO, CC, BCC and SUBJECT (HEADER with those names) match the
// decoded values (RFC 2047 encoded words and charsets converted to
// UTF-8); any other HEADER field matches its raw, unfolded value. A HEADER
// key with an empty Value matches messages that have the field. BODY
// matches the decoded text of the text parts; TEXT matches the raw header
// block, the decoded header fields above, or the body text.
type Criteria struct {
	Op       SearchOp
	Children []*Criteria

	Flag   string // SearchFlag
	UIDs   UIDSet // SearchUIDs
	Field  string // SearchHeader
	Value  string // SearchHeader, SearchBody, SearchText
	DateOp DateOp // SearchInternalDate, SearchSentDate
	Date   time.Time
	Size   int64  // SearchLarger, SearchSmaller
	ModSeq uint64 // SearchModSeq
}

// Searcher evaluates criteria over one mailbox.
type Searcher interface {
	// Search returns the UIDs of the messages of the mailbox that match c,
	// ascending, and the highest MODSEQ among them (0 if none; RFC 7162
	// §3.1.5). A malformed tree is ErrInvalidSearch; a mailbox that is not
	// the caller's is ErrNotFound.
	Search(ctx context.Context, s Scope, mailboxID int64, c *Criteria) (uids []uint32, highestModSeq uint64, err error)
}

// Validate checks the tree's shape and bounds. Implementations call it
// before building a query.
func (c *Criteria) Validate() error {
	n := 0
	return c.validate(1, &n)
}

func (c *Criteria) validate(depth int, nodes *int) error {
	if c == nil {
		return fmt.Errorf("%w: empty node", ErrInvalidSearch)
	}
	if depth > MaxSearchDepth {
		return fmt.Errorf("%w: deeper than %d", ErrInvalidSearch, MaxSearchDepth)
	}
	if *nodes++; *nodes > MaxSearchNodes {
		return fmt.Errorf("%w: more than %d nodes", ErrInvalidSearch, MaxSearchNodes)
	}
	str := func(what, v string) error {
		if len(v) > MaxSearchString {
			return fmt.Errorf("%w: %s longer than %d bytes", ErrInvalidSearch, what, MaxSearchString)
		}
		if strings.IndexByte(v, 0) >= 0 || !utf8.ValidString(v) {
			return fmt.Errorf("%w: NUL or invalid UTF-8 in %s", ErrInvalidSearch, what)
		}
		return nil
	}
	switch c.Op {
	case SearchAll, SearchRecent, SearchModSeq:
	case SearchAnd, SearchOr:
		if len(c.Children) == 0 {
			return fmt.Errorf("%w: empty AND/OR", ErrInvalidSearch)
		}
	case SearchNot:
		if len(c.Children) != 1 {
			return fmt.Errorf("%w: NOT needs exactly one operand", ErrInvalidSearch)
		}
	case SearchFlag:
		if c.Flag == "" {
			return fmt.Errorf("%w: empty flag", ErrInvalidSearch)
		}
		if err := str("flag", c.Flag); err != nil {
			return err
		}
	case SearchUIDs:
		if len(c.UIDs) == 0 {
			return fmt.Errorf("%w: empty UID set", ErrInvalidSearch)
		}
	case SearchHeader:
		if !validFieldName(c.Field) {
			return fmt.Errorf("%w: bad header field name", ErrInvalidSearch)
		}
		if err := str("header value", c.Value); err != nil {
			return err
		}
	case SearchBody, SearchText:
		if err := str("search string", c.Value); err != nil {
			return err
		}
	case SearchInternalDate, SearchSentDate:
		if c.DateOp < DateBefore || c.DateOp > DateSince {
			return fmt.Errorf("%w: bad date comparison", ErrInvalidSearch)
		}
		if c.Date.IsZero() {
			return fmt.Errorf("%w: missing date", ErrInvalidSearch)
		}
	case SearchLarger, SearchSmaller:
		if c.Size < 0 {
			return fmt.Errorf("%w: negative size", ErrInvalidSearch)
		}
	default:
		return fmt.Errorf("%w: unknown key %d", ErrInvalidSearch, c.Op)
	}
	if len(c.Children) > 0 && c.Op != SearchAnd && c.Op != SearchOr && c.Op != SearchNot {
		return fmt.Errorf("%w: operands on a leaf key", ErrInvalidSearch)
	}
	for _, ch := range c.Children {
		if err := ch.validate(depth+1, nodes); err != nil {
			return err
		}
	}
	return nil
}

// validFieldName: RFC 5322 §3.6.8 ftext, printable US-ASCII except ':'.
func validFieldName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 || s[i] == ':' {
			return false
		}
	}
	return true
}
