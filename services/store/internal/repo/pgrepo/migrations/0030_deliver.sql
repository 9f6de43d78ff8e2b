-- Delivery in one round trip, and per-recipient header lines.
--
-- messages.header_prefix holds the header lines a delivery adds for one
-- recipient (Return-Path:, Delivered-To:), served before the shared object.
-- messages.size counts them, so quota, RFC822.SIZE and LARGER/SMALLER all
-- see the message as served. NULL (not '') when there is none: no byte of
-- the row is spent on the usual case.
ALTER TABLE messages ADD COLUMN header_prefix bytea
	CHECK (octet_length(header_prefix) BETWEEN 1 AND 4096);

-- object_meta.search (0001) is read by no query: SEARCH uses search_words
-- (0020). Its GIN index was the most expensive part of recording an
-- object, so it goes, and new rows leave the column empty.
DROP INDEX object_meta_search;
ALTER TABLE object_meta ALTER COLUMN search SET DEFAULT ''::tsvector;

DROP FUNCTION petrel_deliver(bigint, bigint[], bigint, text, bigint, smallint, text[], timestamptz, text);
DROP FUNCTION petrel_add_message(bigint, bigint, bigint, text, bigint, bigint, smallint, text[], timestamptz, text);

-- petrel_add_message adds one message entry. Status: 0 added, 1 duplicate
-- delivery (the earlier entry is returned), 2 no such account, 3 over
-- quota, 4 no such mailbox, 5 mailbox is \Noselect, 7 UIDs exhausted.
-- Nothing is written unless the status is 0. p_size is the size as served
-- (prefix included). The object's refcount is the caller's job (once per
-- object per transaction).
CREATE FUNCTION petrel_add_message(
	p_tenant bigint, p_account bigint, p_mailbox bigint, p_mailbox_name text,
	p_size bigint, p_object bigint, p_flags smallint, p_keywords text[],
	p_date timestamptz, p_delivery text, p_prefix bytea,
	OUT status int, OUT mailbox_id bigint, OUT uidvalidity bigint, OUT uid bigint, OUT modseq bigint)
LANGUAGE plpgsql AS $$
DECLARE
	v_noselect boolean;
	v_uidnext bigint;
	v_kw bigint[];
BEGIN
	-- 1. account row: lock, and check it belongs to the tenant.
	PERFORM 1 FROM accounts a WHERE a.tenant_id = p_tenant AND a.id = p_account FOR NO KEY UPDATE;
	IF NOT FOUND THEN
		status := 2; RETURN;
	END IF;
	-- Idempotency: checked under the account lock, so a concurrent copy of
	-- the same delivery has either committed (seen here) or waits for us.
	IF p_delivery IS NOT NULL THEN
		SELECT d.mailbox_id, d.uidvalidity, d.uid, d.modseq INTO mailbox_id, uidvalidity, uid, modseq
		FROM deliveries d WHERE d.account_id = p_account AND d.delivery_id = p_delivery;
		IF FOUND THEN
			status := 1; RETURN;
		END IF;
	END IF;
	-- 2. mailbox row.
	IF p_mailbox IS NULL THEN
		SELECT m.id INTO p_mailbox FROM mailboxes m WHERE m.account_id = p_account AND m.name = p_mailbox_name;
		IF NOT FOUND THEN
			status := 4; RETURN;
		END IF;
	END IF;
	SELECT m.noselect, m.uidnext INTO v_noselect, v_uidnext FROM mailboxes m
	WHERE m.account_id = p_account AND m.id = p_mailbox AND m.tenant_id = p_tenant FOR NO KEY UPDATE;
	IF NOT FOUND THEN
		status := 4; RETURN;
	END IF;
	IF v_noselect THEN
		status := 5; RETURN;
	END IF;
	IF v_uidnext > 4294967295 THEN
		status := 7; RETURN;
	END IF;
	-- Quota: the limit is enforced by the UPDATE's condition.
	UPDATE accounts a SET used_bytes = a.used_bytes + p_size, used_messages = a.used_messages + 1
	WHERE a.id = p_account
	  AND (a.quota_bytes IS NULL OR a.used_bytes + p_size <= a.quota_bytes)
	  AND (a.quota_messages IS NULL OR a.used_messages + 1 <= a.quota_messages);
	IF NOT FOUND THEN
		status := 3; RETURN;
	END IF;
	v_kw := petrel_keyword_ids(p_account, p_keywords);
	UPDATE mailboxes m SET
		uidnext = m.uidnext + 1,
		highestmodseq = m.highestmodseq + 1,
		messages = m.messages + 1,
		unseen = m.unseen + (p_flags & 1 = 0)::int,
		deleted = m.deleted + (p_flags & 8 <> 0)::int,
		size = m.size + p_size
	WHERE m.account_id = p_account AND m.id = p_mailbox
	RETURNING m.id, m.uidvalidity, m.uidnext - 1, m.highestmodseq INTO mailbox_id, uidvalidity, uid, modseq;
	-- 3. message row.
	INSERT INTO messages (account_id, mailbox_id, uid, modseq, flags, keywords, internal_date, size, object_id, header_prefix)
	VALUES (p_account, mailbox_id, uid, modseq, p_flags, v_kw, p_date, p_size, p_object, p_prefix);
	IF p_delivery IS NOT NULL THEN
		INSERT INTO deliveries (account_id, delivery_id, mailbox_id, uidvalidity, uid, modseq)
		VALUES (p_account, p_delivery, mailbox_id, uidvalidity, uid, modseq);
	END IF;
	status := 0;
END $$;

-- petrel_deliver adds an object to the mailbox (by id, or by name for
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
	p_message_id text, p_in_reply_to text, p_sent timestamptz, p_malformed boolean, p_body_text text)
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
			subject, from_addr, to_addr, cc_addr, bcc_addr, message_id, in_reply_to, sent_date, malformed, body_text)
		VALUES (p_object, p_envelope, p_bodystructure, p_body, p_parts, p_header,
			p_subject, p_from, p_to, p_cc, p_bcc, p_message_id, p_in_reply_to, p_sent, p_malformed, p_body_text);
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
