package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keymigrate/keymigrate/internal/app/storage"
	"github.com/keymigrate/keymigrate/internal/app/storage/smoke"
	"github.com/keymigrate/keymigrate/internal/wiring/cli"
	"github.com/keymigrate/keymigrate/internal/wiring/config"
	"github.com/keymigrate/keymigrate/internal/wiring/connect"
)

func (a *app) presignCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "presign",
		Short: "Phase 1: presigned uploads and downloads confined to one user's prefix, and their smoke test",
		Long: `presign prints what the application's StorageService hands to clients in
Phase 1, for operators and smoke tests:

  presign upload    a presigned POST for a photo's original, whose policy S3
                    enforces: the exact key users/{user}/raw/{photo}/original.{ext}
                    (or, with --prefix, any key starting with that directory),
                    a size range, an image content type and a short expiry;
  presign download  a presigned GET for one of the user's own keys;
  presign smoke     shows, against the bucket, that the server accepts the
                    user's own upload and refuses another user's prefix, a
                    file above the limit and an expired policy (exit 2 if any
                    case behaves otherwise).

The presigned requests are signed with the credentials this command runs with:
give it the application role's (deploy/iam/app-role.json).`,
	}
	cmd.AddCommand(a.presignUploadCmd(), a.presignDownloadCmd(), a.presignSmokeCmd())
	return cmd
}

// openStorage opens the bucket (no database) and the StorageService on it.
func (a *app) openStorage(ctx context.Context, o storage.Options, createBucket bool) (*storage.Service, error) {
	deps, _, err := a.open(ctx, connect.Options{Need: config.Need{Bucket: true}, MaxConns: 4})
	if err != nil {
		return nil, err
	}
	if createBucket {
		if err := deps.Objects.EnsureBucket(ctx); err != nil {
			return nil, err
		}
	}
	return storage.New(deps.Objects.Client(), deps.Objects.Bucket(), o)
}

// bindLimits binds the service options every presign subcommand shares.
func bindLimits(cmd *cobra.Command, o *storage.Options) {
	b := config.NewBinder(cmd.Flags())
	b.Bytes(&o.UploadMinBytes, "min-size", "KEYMIGRATE_UPLOAD_MIN_SIZE", storage.DefaultUploadMinBytes, "smallest upload the policy allows")
	b.Bytes(&o.UploadMaxBytes, "max-size", "KEYMIGRATE_UPLOAD_MAX_SIZE", storage.DefaultUploadMaxBytes, "largest upload the policy allows")
}

func (a *app) presignUploadCmd() *cobra.Command {
	var (
		o       storage.Options
		in      storage.UploadRequest
		userID  string
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "upload --user ID --photo ID [--content-type image/jpeg]",
		Short: "Print a presigned POST for one photo's original (as a curl command, or --json)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := cli.SignalContext()
			defer stop()
			svc, err := a.openStorage(ctx, o, false)
			if err != nil {
				return err
			}
			up, err := svc.PresignUpload(ctx, userID, in)
			if err != nil {
				return err
			}
			if jsonOut {
				return printJSON(map[string]any{
					"url": up.URL, "fields": up.Fields, "key": up.Key, "key_condition": up.KeyCondition,
					"min_bytes": up.MinBytes, "max_bytes": up.MaxBytes, "expires": up.Expires, "policy": up.Policy,
				})
			}
			fmt.Fprintf(os.Stderr, "# key %s, %d..%d bytes, %s, expires %s\n", up.Key, up.MinBytes, up.MaxBytes, in.ContentType, up.Expires.Format(time.RFC3339))
			fmt.Println(curlCommand(up))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&userID, "user", "", "the acting user's id (required)")
	f.StringVar(&in.PhotoID, "photo", "", "the photo's id (required)")
	f.StringVar(&in.ContentType, "content-type", "image/jpeg", "the image type the client sends")
	f.StringVar(&in.Ext, "ext", "", "the original's extension (default: the usual one for --content-type)")
	f.BoolVar(&in.PrefixCondition, "prefix", false, "allow any key under users/{user}/raw/{photo}/ instead of the exact key (unsafe on servers that resolve '..' in keys)")
	f.DurationVar(&in.Expires, "expires", storage.DefaultUploadExpiry, "how long the policy is valid (at most 1h)")
	f.BoolVar(&jsonOut, "json", false, "print the URL, fields and decoded policy as JSON")
	bindLimits(cmd, &o)
	_ = cmd.MarkFlagRequired("user")
	_ = cmd.MarkFlagRequired("photo")
	return cmd
}

// curlCommand is the upload as a shell command: every field with
// --form-string (so no value is read as a file name), then the file, last.
func curlCommand(up *storage.PresignedUpload) string {
	names := make([]string, 0, len(up.Fields))
	for k := range up.Fields {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("curl -sS -w '%{http_code}\\n' " + shellQuote(up.URL))
	for _, k := range names {
		b.WriteString(" \\\n  --form-string " + shellQuote(k+"="+up.Fields[k]))
	}
	b.WriteString(" \\\n  -F 'file=@photo." + strings.TrimPrefix(up.Key[strings.LastIndex(up.Key, "."):], ".") + "'")
	return b.String()
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func (a *app) presignDownloadCmd() *cobra.Command {
	var (
		userID, key string
		expires     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "download --user ID --key KEY",
		Short: "Print a presigned GET URL for one of the user's own keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := cli.SignalContext()
			defer stop()
			svc, err := a.openStorage(ctx, storage.Options{}, false)
			if err != nil {
				return err
			}
			dl, err := svc.PresignDownload(ctx, userID, key, expires)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "# %s, expires %s\n", dl.Key, dl.Expires.Format(time.RFC3339))
			fmt.Println(dl.URL)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&userID, "user", "", "the acting user's id (required)")
	f.StringVar(&key, "key", "", "a key of the layout under users/{user}/ (required)")
	f.DurationVar(&expires, "expires", storage.DefaultDownloadExpiry, "how long the URL is valid (at most 1h)")
	_ = cmd.MarkFlagRequired("user")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func (a *app) presignSmokeCmd() *cobra.Command {
	var (
		o            storage.Options
		createBucket bool
	)
	cmd := &cobra.Command{
		Use:   "smoke",
		Short: "Show that the server enforces the presigned uploads; exit 2 if any case behaves unexpectedly",
		Long: `smoke writes a few small objects under two fresh user ids in the bucket and
checks, printing each case and its outcome:
  - an upload with user A's presigned POST to A's key succeeds, and A reads it back;
  - the same POST with a key under user B's prefix, or one that climbs out of
    A's prefix with '..', is refused by the server (403), and nothing appears
    under B; so is a starts-with policy's POST into B's prefix;
  - a file one byte above the size limit is refused (400 EntityTooLarge);
  - a policy past its expiry is refused (403);
  - a presigned GET of A's key works, and the service refuses to presign,
    read, delete or list B's objects for A without asking S3.
It needs no database. --create-bucket creates the bucket first (local stacks).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := cli.SignalContext()
			defer stop()
			svc, err := a.openStorage(ctx, o, createBucket)
			if err != nil {
				return err
			}
			results, err := smoke.Run(ctx, svc, smoke.Options{Out: os.Stdout})
			if err != nil {
				return err
			}
			if n := smoke.Failed(results); n > 0 {
				return &cli.ExitError{Code: 2, Err: fmt.Errorf("smoke: %d of %d cases behaved unexpectedly", n, len(results))}
			}
			fmt.Printf("smoke: all %d cases behaved as expected\n", len(results))
			return nil
		},
	}
	cmd.Flags().BoolVar(&createBucket, "create-bucket", false, "create the bucket if it does not exist (local stacks)")
	bindLimits(cmd, &o)
	return cmd
}
