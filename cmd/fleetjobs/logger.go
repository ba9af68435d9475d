package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/redis/go-redis/v9"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newLogger returns the process logger: JSON lines on w at level and above,
// ISO 8601 times. At info it logs only start, listen addresses and
// shutdown; requests and client chatter are at debug.
func newLogger(w io.Writer, level zapcore.Level) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "time"
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(zapcore.AddSync(w)), level)
	return zap.New(core, zap.ErrorOutput(zapcore.Lock(zapcore.AddSync(w))))
}

// routeRedisLogs sends go-redis's own log lines (a failed dial, a
// connection pool retry: a line or more a second while Redis is down) to
// logger at debug, instead of unstructured lines on stderr. What an
// operator must see of a Redis outage is said once, at warn, by the parts
// that depend on it, and by /readyz. go-redis has one logger per process.
func routeRedisLogs(logger *zap.Logger) {
	redis.SetLogger(redisLogger{logger.Named("redis")})
}

type redisLogger struct{ l *zap.Logger }

func (r redisLogger) Printf(_ context.Context, format string, v ...any) {
	if ce := r.l.Check(zapcore.DebugLevel, "go-redis"); ce != nil {
		ce.Write(zap.String("detail", strings.TrimSpace(fmt.Sprintf(format, v...))))
	}
}
