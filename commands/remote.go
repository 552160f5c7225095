package commands

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/keyctl/keyctl/store"
)

// openRemote returns the store of the keyctl server at serverURL (--server,
// KEYCTL_SERVER), authenticated with the token from --token-file, else
// KEYCTL_TOKEN, else the file KEYCTL_TOKEN_FILE or token_file in the config
// names. A token is never a flag's value: other users can see command lines.
func (f *Factory) openRemote(ctx context.Context, serverURL string) (store.Store, error) {
	tok, err := f.remoteToken()
	if err != nil {
		return nil, err
	}
	return store.Open(ctx, serverURL, store.Options{Token: tok, AllowPlainHTTP: f.Config.GetBool("allow_http")})
}

func (f *Factory) remoteToken() (string, error) {
	from, tok := "KEYCTL_TOKEN", os.Getenv("KEYCTL_TOKEN")
	path := f.tokenFile
	if path == "" && tok == "" {
		path = f.Config.GetString("token_file")
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", flagErr("token-file", err)
		}
		from, tok = path, string(b)
	}
	tok = strings.TrimSpace(tok)
	if tok == "" && f.tokenOptional {
		return "", nil
	}
	if tok == "" {
		return "", withHint(fmt.Errorf("remote mode needs a token: set KEYCTL_TOKEN or --token-file"),
			"the token is a key made on the server's database, e.g. keyctl create --scope keyctl:admin")
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("the token in %s holds whitespace: it is not a key", from)
	}
	return tok, nil
}
