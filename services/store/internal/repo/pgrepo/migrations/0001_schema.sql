-- Petrel mail store schema, version 1. See the pgrepo package doc for the
-- invariants and the lock order these tables are used with.

CREATE TABLE tenants (
	id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name              text NOT NULL UNIQUE,
	-- tenant-wide limits; NULL is unlimited
	max_accounts      bigint,
	max_domains       bigint,
	max_account_quota bigint,
	created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE domains (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	tenant_id  bigint NOT NULL REFERENCES tenants (id),
	name       text NOT NULL UNIQUE CHECK (name = lower(name)),
	created_at timestamptz NOT NULL DEFAULT now(),
	UNIQUE (tenant_id, id)
);

CREATE TABLE accounts (
	id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	tenant_id        bigint NOT NULL,
	domain_id        bigint NOT NULL,
	local_part       text NOT NULL CHECK (local_part = lower(local_part) AND local_part <> ''),
	password_hash    text NOT NULL DEFAULT '',
	disabled         boolean NOT NULL DEFAULT false,
	-- NULL: unlimited. Usage is signed and changed in the transaction that
	-- changes the messages; limits are enforced by a conditional UPDATE.
	quota_bytes      bigint,
	quota_messages   bigint,
	used_bytes       bigint NOT NULL DEFAULT 0,
	used_messages    bigint NOT NULL DEFAULT 0,
	-- next UIDVALIDITY for a mailbox of this account: never reused.
	next_uidvalidity bigint NOT NULL DEFAULT 1 CHECK (next_uidvalidity BETWEEN 1 AND 4294967296),
	created_at       timestamptz NOT NULL DEFAULT now(),
	FOREIGN KEY (tenant_id, domain_id) REFERENCES domains (tenant_id, id),
	UNIQUE (domain_id, local_part),
	UNIQUE (tenant_id, id)
) WITH (fillfactor = 80);

CREATE TABLE app_passwords (
	id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	tenant_id     bigint NOT NULL,
	account_id    bigint NOT NULL,
	name          text NOT NULL,
	password_hash text NOT NULL,
	created_at    timestamptz NOT NULL DEFAULT now(),
	last_used_at  timestamptz,
	FOREIGN KEY (tenant_id, account_id) REFERENCES accounts (tenant_id, id) ON DELETE CASCADE,
	UNIQUE (account_id, name)
);

-- local_part '' is the domain's catch-all.
CREATE TABLE aliases (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	tenant_id  bigint NOT NULL,
	domain_id  bigint NOT NULL,
	local_part text NOT NULL CHECK (local_part = lower(local_part)),
	targets    text[] NOT NULL CHECK (cardinality(targets) > 0),
	FOREIGN KEY (tenant_id, domain_id) REFERENCES domains (tenant_id, id),
	UNIQUE (domain_id, local_part)
);

-- One row per mailbox. The counters and UID/MODSEQ allocators are updated by
-- every change, so the row is kept narrow and none of them is indexed: the
-- updates stay HOT (fillfactor leaves room on the page).
CREATE TABLE mailboxes (
	account_id       bigint NOT NULL,
	id               bigint GENERATED ALWAYS AS IDENTITY,
	tenant_id        bigint NOT NULL,
	uidvalidity      bigint NOT NULL CHECK (uidvalidity BETWEEN 1 AND 4294967295),
	uidnext          bigint NOT NULL DEFAULT 1 CHECK (uidnext BETWEEN 1 AND 4294967296),
	highestmodseq    bigint NOT NULL DEFAULT 1,
	messages         bigint NOT NULL DEFAULT 0,
	unseen           bigint NOT NULL DEFAULT 0,
	deleted          bigint NOT NULL DEFAULT 0,
	size             bigint NOT NULL DEFAULT 0,
	recent_uid       bigint NOT NULL DEFAULT 0,
	forgotten_modseq bigint NOT NULL DEFAULT 0,
	noselect         boolean NOT NULL DEFAULT false,
	special_use      text NOT NULL DEFAULT '',
	name             text NOT NULL,
	PRIMARY KEY (account_id, id),
	UNIQUE (account_id, name),
	FOREIGN KEY (tenant_id, account_id) REFERENCES accounts (tenant_id, id)
) WITH (fillfactor = 50);

-- Subscriptions are names, not mailbox ids: they outlive the mailbox
-- (RFC 9051 §6.3.7).
CREATE TABLE subscriptions (
	account_id bigint NOT NULL REFERENCES accounts (id),
	name       text NOT NULL,
	PRIMARY KEY (account_id, name)
);

-- Keywords are per account: a message keeps its keyword ids when copied or
-- moved between mailboxes, and PERMANENTFLAGS/FLAGS list the account's set
-- with one indexed read instead of scanning messages.
CREATE TABLE keywords (
	account_id bigint NOT NULL REFERENCES accounts (id),
	id         bigint GENERATED ALWAYS AS IDENTITY,
	name       text NOT NULL,
	PRIMARY KEY (account_id, id)
);
CREATE UNIQUE INDEX keywords_name ON keywords (account_id, lower(name));

-- One row per stored S3 object per tenant: the hot part (refcount) only.
-- refcount counts message rows referring to the object; zero_since is when
-- it last became unreferenced (or was created), the collector's grace clock.
CREATE TABLE objects (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	tenant_id  bigint NOT NULL REFERENCES tenants (id),
	key        text NOT NULL,
	size       bigint NOT NULL CHECK (size >= 0),
	refcount   bigint NOT NULL DEFAULT 0 CHECK (refcount >= 0),
	zero_since timestamptz,
	UNIQUE (tenant_id, key)
) WITH (fillfactor = 80);
-- The GC queue: unreferenced objects by the time they became so.
CREATE INDEX objects_gc ON objects (zero_since) WHERE refcount = 0;

-- The parsed metadata of an object, stored once (single instance) however
-- many mailboxes refer to it. Written once at CreateObject, never updated.
CREATE TABLE object_meta (
	object_id     bigint PRIMARY KEY REFERENCES objects (id) ON DELETE CASCADE,
	envelope      bytea NOT NULL,
	bodystructure bytea NOT NULL,
	body          bytea NOT NULL,
	parts         jsonb NOT NULL,
	header        bytea NOT NULL,
	subject       text NOT NULL,
	from_addr     text NOT NULL,
	to_addr       text NOT NULL,
	cc_addr       text NOT NULL,
	bcc_addr      text NOT NULL,
	message_id    text NOT NULL,
	in_reply_to   text NOT NULL,
	sent_date     timestamptz,
	malformed     boolean NOT NULL,
	body_text     text NOT NULL,
	-- SEARCH TEXT/BODY prefilter; the exact substring check runs on the
	-- columns above (IMAP SEARCH is substring, not word, matching).
	search        tsvector NOT NULL
);
CREATE INDEX object_meta_search ON object_meta USING gin (search);

-- Message entries. flags is the system-flag bitmask (repo.SystemFlags),
-- keywords ids from the account's keyword table. Every writer of a
-- mailbox's messages holds that mailbox's row lock, so UID and MODSEQ
-- commit in order.
CREATE TABLE messages (
	account_id    bigint NOT NULL,
	mailbox_id    bigint NOT NULL,
	uid           bigint NOT NULL CHECK (uid BETWEEN 1 AND 4294967295),
	modseq        bigint NOT NULL,
	flags         smallint NOT NULL DEFAULT 0,
	keywords      bigint[] NOT NULL DEFAULT '{}',
	internal_date timestamptz NOT NULL,
	size          bigint NOT NULL,
	object_id     bigint NOT NULL,
	PRIMARY KEY (account_id, mailbox_id, uid),
	FOREIGN KEY (account_id, mailbox_id) REFERENCES mailboxes (account_id, id)
);
-- CHANGEDSINCE and QRESYNC: changes of a mailbox by MODSEQ.
CREATE INDEX messages_modseq ON messages (account_id, mailbox_id, modseq);

-- Expunge tombstones for QRESYNC VANISHED (RFC 7162 §3.2.10).
CREATE TABLE expunged (
	account_id  bigint NOT NULL,
	mailbox_id  bigint NOT NULL,
	modseq      bigint NOT NULL,
	uid         bigint NOT NULL,
	expunged_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (account_id, mailbox_id, modseq, uid),
	FOREIGN KEY (account_id, mailbox_id) REFERENCES mailboxes (account_id, id) ON DELETE CASCADE
);

-- Idempotency of local delivery per (queue id, recipient).
CREATE TABLE deliveries (
	account_id   bigint NOT NULL REFERENCES accounts (id),
	delivery_id  text NOT NULL,
	mailbox_id   bigint NOT NULL,
	uidvalidity  bigint NOT NULL,
	uid          bigint NOT NULL,
	modseq       bigint NOT NULL,
	delivered_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (account_id, delivery_id)
);
