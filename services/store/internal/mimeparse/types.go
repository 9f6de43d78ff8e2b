package mimeparse

import "time"

// Parsed is everything the store keeps about a message's content, computed
// once at ingest so that no metadata request ever reads the object again.
type Parsed struct {
	// Size is the message's exact size in octets (RFC822.SIZE).
	Size int64
	// Envelope is the IMAP ENVELOPE, already in wire form (RFC 9051 §7.5.2),
	// e.g. `("Mon, 7 Feb 1994 21:52:25 -0800" "subject" ((NIL NIL "a" "b.c")) ...)`.
	Envelope []byte
	// BodyStructure is the IMAP BODYSTRUCTURE with extension data, in wire form.
	BodyStructure []byte
	// Body is the non-extensible IMAP BODY form of the structure, in wire form.
	Body []byte
	// Parts lists the root (Path "") and every MIME part, depth first, with
	// the byte offsets that serve BODY[<section>] by ranged reads.
	Parts []Part
	// Header is the top-level header block, unfolded only as stored (raw
	// bytes, CRLF line endings kept), capped at MaxHeaderBytes; it serves
	// SEARCH HEADER/FROM/TO/CC/BCC/SUBJECT.
	Header []byte
	// Decoded, charset-converted (UTF-8) values for searching and sorting.
	Subject, From, To, Cc, Bcc, MessageID, InReplyTo string
	// Date is the Date: header (SENTBEFORE/SENTON/SENTSINCE); zero if absent
	// or unparsable.
	Date time.Time
	// Text is the decoded UTF-8 text of the text/* parts (HTML with tags
	// removed), for SEARCH BODY/TEXT, capped at MaxTextBytes.
	Text string
	// Malformed is set when the message violated MIME in a way the parser
	// had to work around; it is stored and described all the same.
	Malformed bool
}

// Part locates one MIME entity inside the raw message.
type Part struct {
	// Path is the IMAP section number: "" for the whole message, "1", "1.2".
	// For a message/rfc822 part, its encapsulated message's parts continue
	// the numbering as RFC 9051 §6.4.5 says ("2.1" is the first part of the
	// message in part 2).
	Path string
	// HeaderOffset/HeaderLen: the part's header block, including the blank
	// line that ends it (BODY[1.2.MIME], BODY[HEADER] for the root).
	HeaderOffset, HeaderLen int64
	// BodyOffset/BodyLen: the part's body (BODY[1.2], BODY[TEXT] for the root).
	BodyOffset, BodyLen int64
	// ContentType is the lower-cased "type/subtype"; Encoding the lower-cased
	// Content-Transfer-Encoding (for BINARY[]); Charset as declared.
	ContentType, Encoding, Charset string
	// Lines is the number of lines of the body (for text/* and message/rfc822).
	Lines int64
	// MessageHeaderLen is set for message/rfc822 (and message/global) parts:
	// the encapsulated message's header block starts at BodyOffset and is
	// this long (BODY[2.HEADER]); the rest of the body is BODY[2.TEXT].
	MessageHeaderLen int64
}

const (
	// MaxHeaderBytes bounds the header block kept for SEARCH HEADER.
	MaxHeaderBytes = 256 << 10
	// MaxTextBytes bounds the extracted text kept for SEARCH BODY/TEXT.
	MaxTextBytes = 1 << 20
)
