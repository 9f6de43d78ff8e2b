-- SEARCH fields computed once, in Go, at ingest (repo.SearchWords,
-- pgrepo's sentDay) instead of by the generated columns of 0020: the
-- regexp_replace + to_tsvector over the body text made recording an
-- object about seven times slower than the row itself.
--
-- DROP EXPRESSION keeps every existing row's values (computed by 0020's
-- expressions, which give the same words and day as the Go code for
-- every character the database's locale knows), so old mail stays
-- searchable without a rewrite. Rows written without words get the
-- '_unindexed' marker: the prefilter then always lets them through, so a
-- writer that forgets the words makes SEARCH slower, never wrong.
ALTER TABLE object_meta
	ALTER COLUMN sent_day DROP EXPRESSION,
	ALTER COLUMN search_words DROP EXPRESSION;
ALTER TABLE object_meta
	ALTER COLUMN search_words SET DEFAULT '_unindexed'::tsvector,
	ALTER COLUMN search_words SET NOT NULL;
DROP FUNCTION petrel_sent_day(timestamptz, bytea);

DROP FUNCTION petrel_deliver(bigint, bigint[], bytea[], bigint, text, bigint, smallint, text[], timestamptz, text,
	text, bigint, bytea, bytea, bytea, jsonb, bytea, text, text, text, text, text, text, text, timestamptz, boolean, text);

-- petrel_deliver (as in 0030, plus the object's sent day and words) adds an object to the mailbox (by id, or by name for
-- every recipient) of each account, in ascending account order, each with
-- its own header prefix (p_prefixes is parallel to p_accounts; NULL: none),
-- then takes the object's references: one statement, one transaction,
-- one round trip.
--
-- The object is p_object, or, when that is NULL, the one named p_key,
-- recorded here with its metadata if it is new. Lock order (pgrepo package
-- doc) puts the object row last, so an existing row is only read until
-- the references are added, and a new row is inserted last, already with
-- its reference count. If another transaction recorded the same key
-- meanwhile, serialization_failure makes the caller retry, and the retry
-- finds the row. A missing object raises no_data_found and rolls
-- everything back; so does one the collector removed meanwhile.
CREATE FUNCTION petrel_deliver(
	p_tenant bigint, p_accounts bigint[], p_prefixes bytea[], p_mailbox bigint, p_mailbox_name text,
	p_object bigint, p_flags smallint, p_keywords text[], p_date timestamptz, p_delivery text,
	p_key text, p_size bigint, p_envelope bytea, p_bodystructure bytea, p_body bytea, p_parts jsonb,
	p_header bytea, p_subject text, p_from text, p_to text, p_cc text, p_bcc text,
	p_message_id text, p_in_reply_to text, p_sent timestamptz, p_malformed boolean, p_body_text text,
	p_sent_day date, p_words text[])
RETURNS TABLE (account_id bigint, status int, mailbox_id bigint, uidvalidity bigint, uid bigint, modseq bigint)
LANGUAGE plpgsql AS $$
DECLARE
	v_size bigint;
	v_new boolean := false;
	v_added bigint := 0;
	r record;
	a record;
BEGIN
	-- The size is immutable; an existing row is locked (and its existence
	-- re-checked) after the messages, in lock order.
	IF p_object IS NULL THEN
		SELECT o.id, o.size INTO p_object, v_size FROM objects o WHERE o.tenant_id = p_tenant AND o.key = p_key;
		IF NOT FOUND THEN
			PERFORM 1 FROM tenants t WHERE t.id = p_tenant;
			IF NOT FOUND THEN
				RAISE EXCEPTION 'petrel: tenant % not found', p_tenant USING ERRCODE = 'no_data_found';
			END IF;
			v_new := true;
			v_size := p_size;
			p_object := nextval(pg_get_serial_sequence('objects', 'id'));
		END IF;
	ELSE
		SELECT o.size INTO v_size FROM objects o WHERE o.tenant_id = p_tenant AND o.id = p_object;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'petrel: object % not found', p_object USING ERRCODE = 'no_data_found';
		END IF;
	END IF;
	FOR a IN SELECT DISTINCT ON (u.acct) u.acct, u.prefix
		FROM unnest(p_accounts, coalesce(p_prefixes, '{}'::bytea[])) AS u(acct, prefix)
		WHERE u.acct IS NOT NULL ORDER BY u.acct LOOP
		account_id := a.acct;
		SELECT * INTO r FROM petrel_add_message(p_tenant, a.acct, p_mailbox, p_mailbox_name,
			v_size + coalesce(octet_length(a.prefix), 0), p_object, p_flags, p_keywords, p_date, p_delivery, a.prefix);
		status := r.status; mailbox_id := r.mailbox_id; uidvalidity := r.uidvalidity;
		uid := r.uid; modseq := r.modseq;
		IF r.status = 0 THEN
			v_added := v_added + 1;
		END IF;
		RETURN NEXT;
	END LOOP;
	IF v_new THEN
		-- A new object is recorded even when no recipient took it: the
		-- collector then removes its bytes after the grace period.
		INSERT INTO objects (id, tenant_id, key, size, refcount, zero_since) OVERRIDING SYSTEM VALUE
		VALUES (p_object, p_tenant, p_key, v_size, v_added, CASE WHEN v_added = 0 THEN now() END)
		ON CONFLICT (tenant_id, key) DO NOTHING;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'petrel: object % recorded concurrently', p_key USING ERRCODE = 'serialization_failure';
		END IF;
		INSERT INTO object_meta (object_id, envelope, bodystructure, body, parts, header,
			subject, from_addr, to_addr, cc_addr, bcc_addr, message_id, in_reply_to, sent_date, malformed, body_text,
			sent_day, search_words)
		VALUES (p_object, p_envelope, p_bodystructure, p_body, p_parts, p_header,
			p_subject, p_from, p_to, p_cc, p_bcc, p_message_id, p_in_reply_to, p_sent, p_malformed, p_body_text,
			p_sent_day, coalesce(array_to_tsvector(p_words), '_unindexed'::tsvector));
	ELSIF v_added > 0 OR p_key IS NOT NULL THEN
		-- Recording an existing unreferenced object restarts its grace
		-- period, as CreateObject does.
		UPDATE objects o SET refcount = o.refcount + v_added,
			zero_since = CASE WHEN o.refcount + v_added = 0 THEN now() END
		WHERE o.tenant_id = p_tenant AND o.id = p_object;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'petrel: object % was collected', p_object USING ERRCODE = 'no_data_found';
		END IF;
	END IF;
END $$;
