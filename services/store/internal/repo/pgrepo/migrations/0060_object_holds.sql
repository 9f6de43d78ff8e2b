-- Holds keep an object from the collector while a queue entry still needs
-- its bytes, whatever its mailbox references say: a recipient retried for
-- hours after a delivery attempt recorded the object (a full mailbox), or
-- a remote recipient of a message that a local recipient may expunge. The
-- holder is the queue id. Without a hold such an object was collected
-- once unreferenced for the grace period (an hour by default), and the
-- retry found nothing to deliver.
--
-- Keyed by object key, not id: a hold may be taken before the object is
-- recorded. The collector skips an object with any hold.
CREATE TABLE object_holds (
	tenant_id  bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
	key        text NOT NULL,
	holder     text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, key, holder)
);
