package local

import (
	"context"
	"errors"
	"strings"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
)

// Holds keeps a queue entry's message object from the store's collector
// while the entry waits for a retry (MessageService.HoldObject), and lets
// it go when the entry is finished. Without a hold, an object that a
// delivery attempt recorded but no mailbox references (a full mailbox) or
// that a local recipient expunged (a remote recipient still pending) is
// collected after the store's grace period, an hour by default, while the
// entry may be retried for days.
type Holds struct {
	Messages storev1.MessageServiceClient
}

// Hold holds the object at blobKey for the entry queueID. Idempotent.
func (h Holds) Hold(ctx context.Context, blobKey, queueID string) error {
	tenant, err := keyTenant(blobKey)
	if err != nil {
		return err
	}
	_, err = h.Messages.HoldObject(ctx, &storev1.HoldObjectRequest{TenantId: tenant, BlobKey: blobKey, Holder: queueID})
	return err
}

// Release ends the entry's hold. Idempotent.
func (h Holds) Release(ctx context.Context, blobKey, queueID string) error {
	tenant, err := keyTenant(blobKey)
	if err != nil {
		return err
	}
	_, err = h.Messages.ReleaseObject(ctx, &storev1.ReleaseObjectRequest{TenantId: tenant, BlobKey: blobKey, Holder: queueID})
	return err
}

// keyTenant reads the tenant out of a message key (msg/<tenant>/...,
// ingest.BlobKey), which is the tenant the store recorded it for.
func keyTenant(key string) (string, error) {
	parts := strings.SplitN(key, "/", 3)
	if len(parts) < 3 || parts[0] != "msg" || parts[1] == "" {
		return "", errors.New("local: not a message key: " + key)
	}
	return parts[1], nil
}
