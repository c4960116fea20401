// Package logging builds the zap logger every binary uses: JSON for machines,
// a console encoder when a person is watching a terminal.
package logging

import (
	"fmt"
	"os"

	"github.com/mattn/go-isatty"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// New returns a logger writing to stderr. format is "json", "console" or "auto";
// level is a zap level name.
func New(format, level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	switch format {
	case "auto":
		if isatty.IsTerminal(os.Stderr.Fd()) {
			format = "console"
		} else {
			format = "json"
		}
	case "json", "console":
	default:
		return nil, fmt.Errorf("log format %q: want json, console or auto", format)
	}
	var cfg zap.Config
	if format == "json" {
		cfg = zap.NewProductionConfig()
		cfg.EncoderConfig.TimeKey = "ts"
		cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	} else {
		cfg = zap.NewDevelopmentConfig()
		cfg.EncoderConfig.EncodeLevel = zapcore.CapitalColorLevelEncoder
		cfg.DisableStacktrace = true
	}
	// Sampling would drop per-photo outcome lines, which are the audit trail.
	cfg.Sampling = nil
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.OutputPaths = []string{"stderr"}
	return cfg.Build()
}
