-- Directory administration (repo.Admin): the tenant-wide byte limit and the
-- send-as right of aliases. The admin listings need no new index: domains
-- and accounts are reached by the (tenant_id, id) and (domain_id,
-- local_part) unique indexes of migration 0001.

-- quota_bytes: the tenant's total storage; NULL is unlimited. Checked when a
-- recipient is resolved (RCPT time), against the sum of its accounts' usage.
ALTER TABLE tenants ADD COLUMN quota_bytes bigint CHECK (quota_bytes > 0);

-- send_as: accounts among the alias's targets may use its address as
-- envelope sender and From:. Never honoured for the catch-all.
ALTER TABLE aliases ADD COLUMN send_as boolean NOT NULL DEFAULT false;
