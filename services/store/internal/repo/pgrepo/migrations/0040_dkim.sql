-- DKIM signing keys (RFC 6376) of domains. The private key is sealed by
-- the store (AES-256-GCM with the operator's secrets key) before it gets
-- here: the database never holds it in clear. A domain's keys go with the
-- domain.
CREATE TABLE dkim_keys (
	tenant_id   bigint NOT NULL,
	domain_id   bigint NOT NULL,
	selector    text NOT NULL CHECK (selector ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$'),
	algorithm   text NOT NULL CHECK (algorithm IN ('rsa', 'ed25519')),
	public_key  bytea NOT NULL,
	sealed_key  bytea NOT NULL,
	created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
	PRIMARY KEY (domain_id, selector),
	FOREIGN KEY (tenant_id, domain_id) REFERENCES domains (tenant_id, id) ON DELETE CASCADE
);

CREATE INDEX dkim_keys_tenant ON dkim_keys (tenant_id);
