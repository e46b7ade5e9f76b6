package main

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/academy-gateway/academy-gateway/admin"
	"github.com/academy-gateway/academy-gateway/tokens"
	"github.com/academy-gateway/academy-gateway/webhooks"
)

// Lifecycle events (docs/reference.md §9) are recorded where a change is made: onboarding (connected,
// replaced), the token manager (reauth_required), and the revocations below, which the admin
// API and the CLI share.

var (
	_ admin.Store   = adminStore{}
	_ admin.Revoker = revoker{}
)

// publish records e on the webhook queue (a no-op when webhooks are off). A failure is logged:
// the change it reports has already been made.
func (a *app) publish(ctx context.Context, e webhooks.Event) {
	if err := a.queue.Publish(ctx, e); err != nil {
		a.log.Error("record webhook event", zap.String("type", e.Type), zap.Error(err))
	}
}

// onReauth is the token manager's hook: a connection it marked reauth_required.
func (a *app) onReauth(ctx context.Context, user, reason string) {
	a.publish(ctx, webhooks.ReauthRequired(time.Now(), user, reason))
}

// adminStore is the token store as the admin API sees it: revoking a key records key.revoked.
type adminStore struct {
	*tokens.Store
	a *app
}

// DeleteKey revokes the key and records the event before the caller answers.
func (s adminStore) DeleteKey(ctx context.Context, id string) (tokens.APIKey, error) {
	k, err := s.Store.DeleteKey(ctx, id)
	if err == nil {
		s.a.publish(ctx, webhooks.KeyRevoked(time.Now(), k.User, k.ID))
	}
	return k, err
}

// revoker revokes a connection for the admin API and the CLI: the grant is invalidated at the
// Academy, the tokens deleted, the pinned Academy identity cleared and connection.revoked
// recorded.
type revoker struct{ a *app }

// Revoke returns tokens.ErrNotConnected when the user has no connection.
func (r revoker) Revoke(ctx context.Context, user string) error {
	c, err := r.a.store.Connection(ctx, user)
	if err != nil && !errors.Is(err, tokens.ErrDecrypt) && !errors.Is(err, tokens.ErrNotConnected) {
		return err
	}
	if err := r.a.mgr.Revoke(ctx, user); err != nil {
		return err
	}
	if err := r.a.store.UnpinIdentity(ctx, c.AcademyID, user); err != nil {
		r.a.log.Warn("clear pinned academy identity", zap.String("user", user), zap.Error(err))
	}
	r.a.publish(ctx, webhooks.Revoked(time.Now(), user))
	return nil
}

// newDispatcher builds the webhook dispatcher of this replica, or nil when webhooks are off.
func (a *app) newDispatcher(opts appOptions) (*webhooks.Dispatcher, error) {
	if a.cfg.Webhooks.URL == "" {
		return nil, nil
	}
	signer, err := webhooks.NewSigner(a.cfg.Webhooks.Secret)
	if err != nil {
		return nil, usageError{errors.New("webhooks.secret: " + err.Error())}
	}
	wo := webhooks.Options{URL: a.cfg.Webhooks.URL, Logger: a.log.Named("webhooks")}
	if opts.webhooks != nil {
		opts.webhooks(&wo)
	}
	return webhooks.NewDispatcher(a.queue, signer, a.m, wo), nil
}
