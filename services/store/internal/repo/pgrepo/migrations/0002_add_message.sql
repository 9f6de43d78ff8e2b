-- Server-side message insertion, so that an APPEND or a delivery to many
-- recipients is one round trip and one transaction. Lock order as in the
-- pgrepo package doc: account row, then mailbox row, then message rows,
-- then the object row.

-- petrel_keyword_ids returns the account's ids for keyword names, creating
-- the missing ones. Each statement of a volatile function takes a new
-- snapshot, so a name inserted concurrently (ON CONFLICT waited for it) is
-- seen by the SELECT.
CREATE FUNCTION petrel_keyword_ids(p_account bigint, p_names text[]) RETURNS bigint[]
LANGUAGE plpgsql AS $$
DECLARE
	v_ids bigint[];
BEGIN
	IF p_names IS NULL OR cardinality(p_names) = 0 THEN
		RETURN '{}';
	END IF;
	INSERT INTO keywords (account_id, name)
	SELECT p_account, n FROM unnest(p_names) AS n
	ON CONFLICT (account_id, lower(name)) DO NOTHING;
	SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO v_ids
	FROM keywords WHERE account_id = p_account AND lower(name) IN (SELECT lower(n) FROM unnest(p_names) AS n);
	RETURN v_ids;
END $$;

-- petrel_add_message adds one message entry. Status: 0 added, 1 duplicate
-- delivery (the earlier entry is returned), 2 no such account, 3 over
-- quota, 4 no such mailbox, 5 mailbox is \Noselect, 7 UIDs exhausted.
-- Nothing is written unless the status is 0. The object's refcount is the
-- caller's job (once per object per transaction).
CREATE FUNCTION petrel_add_message(
	p_tenant bigint, p_account bigint, p_mailbox bigint, p_mailbox_name text,
	p_size bigint, p_object bigint, p_flags smallint, p_keywords text[],
	p_date timestamptz, p_delivery text,
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
	INSERT INTO messages (account_id, mailbox_id, uid, modseq, flags, keywords, internal_date, size, object_id)
	VALUES (p_account, mailbox_id, uid, modseq, p_flags, v_kw, p_date, p_size, p_object);
	IF p_delivery IS NOT NULL THEN
		INSERT INTO deliveries (account_id, delivery_id, mailbox_id, uidvalidity, uid, modseq)
		VALUES (p_account, p_delivery, mailbox_id, uidvalidity, uid, modseq);
	END IF;
	status := 0;
END $$;

-- petrel_deliver adds the object to the mailbox (by id, or by name for
-- every recipient) of each account, in ascending account order, and takes
-- the object's references last. A missing object raises no_data_found and
-- rolls everything back.
CREATE FUNCTION petrel_deliver(
	p_tenant bigint, p_accounts bigint[], p_mailbox bigint, p_mailbox_name text,
	p_object bigint, p_flags smallint, p_keywords text[], p_date timestamptz, p_delivery text)
RETURNS TABLE (account_id bigint, status int, mailbox_id bigint, uidvalidity bigint, uid bigint, modseq bigint)
LANGUAGE plpgsql AS $$
DECLARE
	v_size bigint;
	v_added bigint := 0;
	r record;
BEGIN
	-- The size is immutable; the row is locked (and its existence
	-- re-checked) after the messages, in lock order.
	SELECT o.size INTO v_size FROM objects o WHERE o.tenant_id = p_tenant AND o.id = p_object;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'petrel: object % not found', p_object USING ERRCODE = 'no_data_found';
	END IF;
	FOR account_id IN SELECT DISTINCT a FROM unnest(p_accounts) AS a ORDER BY a LOOP
		SELECT * INTO r FROM petrel_add_message(p_tenant, account_id, p_mailbox, p_mailbox_name,
			v_size, p_object, p_flags, p_keywords, p_date, p_delivery);
		status := r.status; mailbox_id := r.mailbox_id; uidvalidity := r.uidvalidity;
		uid := r.uid; modseq := r.modseq;
		IF r.status = 0 THEN
			v_added := v_added + 1;
		END IF;
		RETURN NEXT;
	END LOOP;
	IF v_added > 0 THEN
		UPDATE objects o SET refcount = o.refcount + v_added, zero_since = NULL
		WHERE o.tenant_id = p_tenant AND o.id = p_object;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'petrel: object % was collected', p_object USING ERRCODE = 'no_data_found';
		END IF;
	END IF;
END $$;
