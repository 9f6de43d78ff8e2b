// Package queue is the delivery side of the mail queue: the JetStream
// consumers that take queue entries (proto petrel.queue.v1.QueueEntry) from
// the stream smtp fills, make delivery attempts through an Attempter, and
// keep the state of entries that must be tried again.
//
// # Where the retry state lives
//
// All of it is in JetStream, so every delivery replica shares it and nothing
// else (no table in the store) has to be kept in step:
//
//   - ACTIVE: the entry smtp published to PETREL_QUEUE (petrel.queue.inbound),
//     pulled through the durable work-queue consumer "delivery"
//     (natsx.EnsureStreams declares both).
//   - DEFERRED: after an attempt that left recipients with a temporary
//     failure, the worker publishes a petrel.delivery.v1.QueueItem (the
//     entry, every recipient's outcome, attempts, last reply, next attempt
//     time) to its own work-queue stream PETREL_DELIVERY_DEFERRED (subject
//     petrel.delivery.deferred, durable consumer "delivery-deferred",
//     declared by EnsureDeferred in this package) with the deterministic
//     message id "<queue id>.<attempt>", and only then acknowledges the
//     message it was working on. A crash between the two republishes the
//     same id, which the stream drops as a duplicate (its duplicate window,
//     20 minutes, outlasts the 5-minute ack wait after which the old message
//     comes back).
//   - The deferred consumer receives an item at once; an item that is not
//     due yet is negatively acknowledged with the delay left
//     (NakWithDelay), so JetStream itself wakes it up at its next attempt
//     time, on whichever replica pulls then. The item carries its own due
//     time, so an early redelivery (a server restart) is harmless: it is
//     delayed again. Waiting items are unacknowledged, which is why they
//     live in their own stream whose consumer has no MaxAckPending limit:
//     on PETREL_QUEUE (limit 1000) a thousand deferred entries would stop
//     new mail.
//
// A message is acknowledged only when each of its recipients is delivered,
// bounced (the DSN is queued) or rescheduled (the deferred item is stored).
// Until then a worker sends in-progress acks every InProgressEvery so that a
// slow attempt keeps the message (SMTP-LESSONS 9). When an attempt cannot
// be made at all (the store is unavailable), nothing is recorded and the
// message is negatively acknowledged with a short backoff growing with its
// delivery count (Options.UnavailableBackoff): it stays ACTIVE and comes
// back to some replica.
//
// Exactly once: local delivery is idempotent in the store per (queue id,
// account), so an attempt that is repeated because the worker died before
// its ack, or an entry that smtp published twice, yields one copy. Remote
// delivery is at least once, as in every MTA: a crash after the remote 250
// and before the ack sends the message again.
//
// # The message object
//
// smtp writes the raw message to blob storage; the store references it once
// a local delivery links it into a mailbox. When an entry is finished and no
// store Deliver call for it may have created such a reference
// (QueueItem.store_may_reference), the worker deletes the object itself;
// otherwise the object is the store's, whose collector deletes it once
// unreferenced. See the package delivery doc for the gap that remains.
//
// RFCs: RFC 5321 §4.5.4.1 (retry strategy, queue lifetime), RFC 3464 (the
// DSNs a Bouncer sends).
package queue
