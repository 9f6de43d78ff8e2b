-- SEARCH support (pgrepo/search.go): the day of the Date: header in its own
-- zone (SENTBEFORE/SENTON/SENTSINCE), and a word index of the body text that
-- is a sound prefilter for IMAP's substring matching.

-- petrel_sent_day is the calendar day of the Date: header as written: the
-- parsed instant (sent_date, UTC) moved by the header's numeric zone
-- offset. Obsolete zone names (GMT, EST, ...) and a missing offset count as
-- +0000, as the parser that filled sent_date treats them.
CREATE FUNCTION petrel_sent_day(p_sent timestamptz, p_header bytea) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
	SELECT ((p_sent AT TIME ZONE 'UTC') + coalesce(
		(SELECT (CASE WHEN z[1] = '-' THEN -1 ELSE 1 END) * make_interval(hours => z[2]::int, mins => z[3]::int)
		 FROM regexp_match(
			(regexp_match(convert_from(p_header, 'LATIN1'), '(?:^|\n)date[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)', 'i'))[1],
			'[0-9]:[0-9]{2}(?::[0-9]{2})?[ \t\r\n]*([+-])([0-9]{2}):?([0-9]{2})') AS z),
		interval '0'))::date
$$;

-- search_words indexes the body text as maximal alphanumeric runs: every
-- other character becomes a space before the parser sees the text, so each
-- run is exactly one lexeme (the default parser would otherwise drop runs
-- inside tag-like "<...>" spans and URL protocols, and keep e-mail
-- addresses and host names as single tokens, which would make it miss
-- substrings). A text the index does not cover completely (longer than the
-- indexed prefix, or with a run too long to be a lexeme: 2047 bytes, i.e.
-- 512 characters of up to 4 bytes; a regex repeats at most 255 times) carries the lexeme '_unindexed', which
-- no run can produce and which every prefilter query also accepts.
-- (object_meta.search from 0001 mixes header fields into the same parser
-- output and is not used by SEARCH.)
ALTER TABLE object_meta
	ADD COLUMN sent_day date GENERATED ALWAYS AS (petrel_sent_day(sent_date, header)) STORED,
	ADD COLUMN search_words tsvector GENERATED ALWAYS AS (
		to_tsvector('simple'::regconfig, regexp_replace(left(body_text, 262144), '[^[:alnum:]]+', ' ', 'g')) ||
		CASE WHEN length(body_text) > 262144 OR body_text ~ '[[:alnum:]]{255}[[:alnum:]]{255}[[:alnum:]]{2}'
			THEN '_unindexed'::tsvector ELSE ''::tsvector END) STORED;

CREATE INDEX object_meta_search_words ON object_meta USING gin (search_words);
