package fleet

import (
	"context"
	"errors"
	"fmt"
)

// KeySecret returns the secret every replica keys its stream-key hashes
// with (stream.KeyerOptions.Secret), creating it in Redis on first use: two
// replicas with different secrets would name the same clients' keys apart
// and each poll them. Once read, the engine writes it back (if absent) at
// every heartbeat, so a Redis restart without persistence does not give the
// next replica to start a secret of its own. SSEGATE_KEY_SECRET avoids the
// question altogether.
func (e *Engine) KeySecret(ctx context.Context) ([]byte, error) {
	var v string
	err := e.do(ctx, opReplica, func(ctx context.Context) (err error) {
		if err := e.rdb.SetNX(ctx, e.names.secret(), randomHex(32), 0).Err(); err != nil {
			return err
		}
		v, err = e.rdb.Get(ctx, e.names.secret()).Result()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("fleet: key secret: %w", err)
	}
	if len(v) < 32 {
		return nil, errors.New("fleet: key secret in Redis is shorter than 32 characters")
	}
	e.mu.Lock()
	e.secret = v
	e.mu.Unlock()
	return []byte(v), nil
}

// keepSecret writes the secret back if Redis lost it.
func (e *Engine) keepSecret(ctx context.Context) error {
	e.mu.Lock()
	v := e.secret
	e.mu.Unlock()
	if v == "" {
		return nil
	}
	return e.rdb.SetNX(ctx, e.names.secret(), v, 0).Err()
}
