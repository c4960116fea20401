package cli_test

import (
	"net"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/wiring/cli"
	"github.com/keymigrate/keymigrate/internal/wiring/connect"
)

func service(t *testing.T, args ...string) *cli.Service {
	t.Helper()
	cmd := &cobra.Command{Use: "test"}
	svc := cli.NewService(cmd, "metrics address")
	require.NoError(t, cmd.Flags().Parse(args))
	return svc
}

func TestServiceRefusesABadVariableBeforeStartingAnything(t *testing.T) {
	t.Setenv("KEYMIGRATE_S3_PATH_STYLE", "maybe")
	_, _, err := service(t).Start(connect.Options{})
	require.ErrorContains(t, err, "KEYMIGRATE_S3_PATH_STYLE")
}

func TestServiceNamesTheListenFlagWhenItsAddressIsTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	_, _, err = service(t, "--listen", l.Addr().String(), "--log-level", "error").Start(connect.Options{})
	require.ErrorContains(t, err, "--listen "+l.Addr().String())
}

func TestServiceStartsAndStops(t *testing.T) {
	ctx, run, err := service(t, "--log-level", "error").Start(connect.Options{})
	require.NoError(t, err)
	require.NotNil(t, run.Metrics, "fresh metrics when the main brings none")
	require.NoError(t, ctx.Err())
	run.Close()
}
