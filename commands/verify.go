package commands

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keyctl/keyctl/apikey"
	"github.com/keyctl/keyctl/output"
	"github.com/keyctl/keyctl/store"
	"github.com/keyctl/keyctl/store/keys"
)

// verifyExit maps each result code to its documented exit status.
var verifyExit = map[keys.Code]int{
	keys.Valid:         0,
	keys.Malformed:     10,
	keys.NotFound:      11,
	keys.CodeRevoked:   12,
	keys.CodeDisabled:  13,
	keys.CodeExpired:   14,
	keys.Forbidden:     15,
	keys.RateLimited:   16,
	keys.QuotaExceeded: 17,
}

// maxKeyInput bounds what verify reads: a longer input is not a key, and is
// never read whole.
const maxKeyInput = 512

const verifyResultsHelp = `RESULTS
  code            exit  http_status  meaning
  VALID              0          200  the key may be used
  MALFORMED         10          401  not a keyctl key, or its checksum fails (no database is opened)
  NOT_FOUND         11          401  well-formed, but no key has this secret
  REVOKED           12          401  revoked, or an old secret after rotation (the reason says which)
  DISABLED          13          401  the key is disabled
  EXPIRED           14          401  the key has expired
  FORBIDDEN         15          403  wrong environment, address not allowed, or a scope missing
  RATE_LIMITED      16          429  over the key's rate limit (the reason says when to retry)
  QUOTA_EXCEEDED    17          402  the key's quota is spent

  Exit 1: no decision could be made (the database is unreadable, ...).
  Exit 2: usage error (a bad flag or value).`

// VerifyOptions are the parsed flags of keyctl verify.
type VerifyOptions struct {
	Deps
	Request keys.VerifyRequest
	Arg     string // the positional argument, if any ("-" is stdin)
	FromEnv string
	Offline bool
	Quiet   bool
	Format  output.Format
}

func newVerifyCmd(f *Factory, runF func(context.Context, *VerifyOptions) error) *cobra.Command {
	var scopes []string
	var env, ip, cost string
	opts := &VerifyOptions{Deps: f.deps()}
	cmd := &cobra.Command{
		Use:   "verify [-]",
		Short: "Check whether a key may be used, with a stable exit status",
		Long: `Check whether a key may be used for the given scopes, environment and client
address, right now, and record the use. The key is read from stdin (at most
512 bytes, surrounding whitespace trimmed), from --from-env VAR, or from a
hidden prompt on a terminal. A key given as an argument works too, with a
warning: other users can see a command line.

Checks run in this order and the first failure decides: shape and checksum,
found, revoked (or an old secret after rotation), disabled, expired,
environment, address, scope, rate limit, quota. A rejected call spends no
quota. Every verification of a found key counts in its usage.

Nothing is printed on stdout unless -o json; one line on stderr says the
result, and -q silences it.

` + verifyResultsHelp,
		Example: `  echo "$API_KEY" | keyctl verify --scope sdk --env production
  keyctl verify --from-env API_KEY --ip 203.0.113.7 -o json
  if keyctl verify -q --from-env API_KEY --scope deploy; then deploy; fi`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("verify takes at most one key, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &opts.Request
			var err error
			if len(args) == 1 {
				opts.Arg = args[0]
			}
			if opts.Arg != "" && opts.FromEnv != "" {
				return usagef("give the key either as an argument or with --from-env, not both")
			}
			if req.Scopes, err = parseScopes("scope", scopes); err != nil {
				return err
			}
			if env != "" {
				if req.Env, err = parseEnv("env", env); err != nil {
					return err
				}
			}
			if ip != "" {
				if req.IP, err = netip.ParseAddr(ip); err != nil || req.IP.Zone() != "" {
					return flagErr("ip", fmt.Errorf("%q is not an IP address", ip))
				}
			}
			if req.Cost, err = strconv.ParseInt(cost, 10, 64); err != nil || req.Cost < 0 {
				return flagErr("cost", fmt.Errorf("%q is not a number of quota units (0 or more)", cost))
			}
			if opts.Format, err = f.outputFormat(); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runVerify(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&scopes, "scope", nil, "scope the key must hold; repeat or separate with commas (all are required)")
	fl.StringVar(&env, "env", "", "environment the key must belong to")
	fl.StringVar(&ip, "ip", "", "the client's address, checked against the key's allowlist")
	kindVar(fl, &cost, "cost", "1", "int", "quota units to spend; 0 checks without spending")
	fl.StringVar(&opts.FromEnv, "from-env", "", "read the key from this environment variable")
	fl.BoolVar(&opts.Offline, "offline", false, "check only shape and checksum, without any database")
	fl.BoolVarP(&opts.Quiet, "quiet", "q", false, "print nothing; the exit status says it all")
	return cmd
}

func runVerify(ctx context.Context, opts *VerifyOptions) error {
	token, err := readKey(ctx, opts.IO, opts)
	if err != nil {
		return err
	}
	opts.Request.Token = token
	var res *keys.VerifyResult
	switch {
	case token == "":
		res = keys.NewResult(keys.Malformed, "empty input: no key was given", nil)
	case len(token) > maxKeyInput:
		res = keys.NewResult(keys.Malformed, fmt.Sprintf("input longer than %d bytes is not a key", maxKeyInput), nil)
	default:
		if _, perr := apikey.Parse(token); perr != nil {
			res = keys.MalformedResult()
		} else if opts.Offline {
			res = keys.NewResult(keys.Valid, "well-formed and its checksum holds (checked offline, without any database)", nil)
		}
	}
	if res == nil {
		err := opts.withStore(ctx, func(s store.Store) error {
			res, err = s.Verify(ctx, opts.Request)
			return err
		})
		if err != nil {
			return fmt.Errorf("could not verify the key: %w", err)
		}
	}
	if err := printVerify(opts, res); err != nil {
		return err
	}
	if res.Code == keys.Valid {
		return nil
	}
	return &exitError{code: verifyExit[res.Code]}
}

// readKey reads the key from the argument, --from-env, a hidden prompt on a
// terminal, or stdin (at most maxKeyInput bytes), and trims it.
func readKey(ctx context.Context, io *output.IOStreams, opts *VerifyOptions) (string, error) {
	switch {
	case opts.FromEnv != "":
		v, ok := os.LookupEnv(opts.FromEnv)
		if !ok {
			return "", flagErr("from-env", fmt.Errorf("environment variable %s is not set", opts.FromEnv))
		}
		return strings.TrimSpace(v), nil
	case opts.Arg != "" && opts.Arg != "-":
		fmt.Fprintln(io.ErrOut, "keyctl: warning: a key on the command line is visible to other users (ps, shell history); pipe it on stdin or use --from-env")
		return strings.TrimSpace(opts.Arg), nil
	case opts.Arg == "" && io.IsStdinTTY():
		fmt.Fprint(io.ErrOut, "Key: ")
		key, err := readHidden(ctx, io)
		return strings.TrimSpace(key), err
	}
	return readLimited(io.In)
}

// readLimited reads at most maxKeyInput+1 bytes: enough to know that a
// longer input is not a key without reading it whole.
func readLimited(r io.Reader) (string, error) {
	b, err := io.ReadAll(io.LimitReader(bufio.NewReaderSize(r, maxKeyInput+1), maxKeyInput+1))
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the key from stdin: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func printVerify(opts *VerifyOptions, res *keys.VerifyResult) error {
	if opts.Quiet {
		return nil
	}
	return printData(opts.IO, opts.Format, res, func() error {
		label := strings.ToLower(strings.ReplaceAll(string(res.Code), "_", " "))
		k := res.Key
		switch {
		case res.Code == keys.Valid && k != nil:
			opts.IO.Notef("keyctl: valid: %s (%s) scopes %s env %s", k.Name, k.ID, joinOrNone(k.Scopes), k.Env)
		case k != nil:
			opts.IO.Notef("keyctl: %s: %s (%s): %s", label, k.Name, k.ID, res.Reason)
		default:
			opts.IO.Notef("keyctl: %s: %s", label, res.Reason)
		}
		return nil
	})
}
