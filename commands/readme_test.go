package commands

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	"go.yaml.in/yaml/v3"
)

// TestREADME runs the README's quick start, create examples and CI recipes
// as written, with GITHUB_ACTIONS=true, locally and against a keyctl
// server, and checks byte for byte what reaches gh, curl and $GITHUB_ENV
// (gh and curl are stand-ins of the test binary that record what they get).
// Each block run is marked in the README with <!-- readme-test: NAME -->;
// a marked block that goes missing fails the test. Only the step that
// installs keyctl is not run as written in the recipes: the keyctl under
// test is on the PATH. The quick start's own install is run for real.
func TestREADME(t *testing.T) {
	blocks := readmeBlocks(t)
	dir := t.TempDir()
	for name, recipe := range readmeRecipes {
		block, ok := blocks[name]
		if !ok {
			t.Fatalf("README.md has no block marked <!-- readme-test: %s -->", name)
		}
		script := recipe(t, block)
		if err := os.WriteFile(filepath.Join(dir, name+".txtar"), []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name := range blocks {
		if readmeRecipes[name] == nil {
			t.Errorf("README.md marks a block %q that no test runs", name)
		}
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	goEnv := map[string]string{}
	for _, v := range []string{"GOCACHE", "GOMODCACHE", "GOROOT"} {
		out, err := exec.Command("go", "env", v).Output()
		if err != nil {
			t.Fatalf("go env %s: %v", v, err)
		}
		goEnv[v] = strings.TrimSpace(string(out))
	}
	for _, remote := range []bool{false, true} {
		t.Run(map[bool]string{false: "local", true: "remote"}[remote], func(t *testing.T) {
			p := scriptParams(t, remote, false)
			p.Dir = dir
			setup := p.Setup
			p.Setup = func(env *testscript.Env) error {
				if err := setup(env); err != nil {
					return err
				}
				env.Setenv("KEYCTL_REPO", repo)
				env.Setenv("GITHUB_ACTIONS", "true")
				env.Setenv("GITHUB_REPOSITORY", "acme/shop")
				env.Setenv("GITHUB_ENV", filepath.Join(env.WorkDir, "github_env"))
				for k, v := range goEnv {
					env.Setenv(k, v)
				}
				env.Setenv("GOPROXY", "off")
				env.Setenv("GOFLAGS", "-mod=readonly")
				if remote {
					return serveScript(env)
				}
				return nil
			}
			testscript.Run(t, p)
		})
	}
}

// readmeBlock is a fenced block of the README: its language and text.
type readmeBlock struct{ lang, text string }

var markRE = regexp.MustCompile("(?m)^<!-- readme-test: ([a-z-]+) -->\n```([a-z]*)\n((?s:.*?))```\n")

func readmeBlocks(t *testing.T) map[string]readmeBlock {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]readmeBlock{}
	for _, m := range markRE.FindAllStringSubmatch(string(b), -1) {
		out[m[1]] = readmeBlock{lang: m[2], text: m[3]}
	}
	return out
}

// installRE matches what installs keyctl: in a recipe, the keyctl under
// test stands for it.
var installRE = regexp.MustCompile(`^\s*(go (-C \S+ )?install (\./cmd/keyctl|github\.com/keyctl/keyctl/cmd/keyctl@\S+)|export PATH="\$\(go env GOPATH\)/bin:\$PATH")\s*$`)

// ciSecrets stand in for the CI's variables and secrets, as shell words.
var ciSecrets = map[string]string{
	"vars.KEYCTL_SERVER":          `$KEYCTL_SERVER`,
	"secrets.KEYCTL_ADMIN_TOKEN":  `$KEYCTL_TOKEN`,
	"secrets.KEYCTL_VERIFY_TOKEN": `$KEYCTL_TOKEN`,
	"secrets.GH_ADMIN_TOKEN":      `gh-admin-token`,
	"secrets.API_KEY":             `$(cat "$WORK/api.key")`,
}

var exprRE = regexp.MustCompile(`^\$\{\{\s*(\S+)\s*\}\}$`)

// shellEnv turns a workflow's env into shell assignments.
func shellEnv(t *testing.T, env map[string]string) string {
	t.Helper()
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, k := range names {
		v := env[k]
		if m := exprRE.FindStringSubmatch(v); m != nil {
			w, ok := ciSecrets[m[1]]
			if !ok {
				t.Fatalf("the README's recipe uses %s: give it a value in ciSecrets", v)
			}
			fmt.Fprintf(&b, "export %s=\"%s\"\n", k, w)
			continue
		}
		fmt.Fprintf(&b, "export %s='%s'\n", k, strings.ReplaceAll(v, "'", `'\''`))
	}
	return b.String()
}

// shellLines is a block of shell as written, but for the lines that
// install keyctl.
func shellLines(text string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(text, "\n") {
		if installRE.MatchString(strings.TrimRight(line, "\n")) {
			b.WriteString("command -v keyctl >/dev/null # installs keyctl: the one under test\n")
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}

// workflowStep is a step of a GitHub Actions job.
type workflowStep struct {
	Uses string            `yaml:"uses"`
	Run  string            `yaml:"run"`
	Env  map[string]string `yaml:"env"`
}

// githubJob is one job of a README workflow, or the README's lone steps, as
// a shell script: each run step in a subshell with its env, failing at the
// first failure as Actions does.
func githubJob(t *testing.T, block readmeBlock, job string) string {
	t.Helper()
	var wf struct {
		Jobs map[string]struct {
			Env   map[string]string `yaml:"env"`
			Steps []workflowStep    `yaml:"steps"`
		} `yaml:"jobs"`
	}
	var steps []workflowStep
	var jobEnv map[string]string
	if err := yaml.Unmarshal([]byte(dedent(block.text)), &wf); err == nil && wf.Jobs != nil {
		j, ok := wf.Jobs[job]
		if !ok {
			t.Fatalf("the README's workflow has no job %q", job)
		}
		steps, jobEnv = j.Steps, j.Env
	} else if err := yaml.Unmarshal([]byte(dedent(block.text)), &steps); err != nil {
		t.Fatalf("the README's workflow is not YAML: %v", err)
	}
	var b strings.Builder
	b.WriteString("set -e\n" + shellEnv(t, jobEnv))
	for _, st := range steps {
		if st.Uses != "" {
			continue
		}
		fmt.Fprintf(&b, "(\nset -e\n%s%s)\n", shellEnv(t, st.Env), shellLines(st.Run))
	}
	return b.String()
}

// gitlabJob is one job of the README's GitLab pipeline as a shell script.
func gitlabJob(t *testing.T, block readmeBlock, job string) string {
	t.Helper()
	var pipeline map[string]struct {
		Script []string `yaml:"script"`
	}
	if err := yaml.Unmarshal([]byte(block.text), &pipeline); err != nil {
		t.Fatalf("the README's GitLab pipeline is not YAML: %v", err)
	}
	j, ok := pipeline[job]
	if !ok {
		t.Fatalf("the README's GitLab pipeline has no job %q", job)
	}
	var b strings.Builder
	b.WriteString("set -e\n")
	for _, line := range j.Script {
		b.WriteString(shellLines(line) + "\n")
	}
	return b.String()
}

// dedent removes the indentation common to every line of a YAML fragment.
func dedent(s string) string {
	lines := strings.Split(s, "\n")
	indent := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		n := len(l) - len(strings.TrimLeft(l, " "))
		if indent < 0 || n < indent {
			indent = n
		}
	}
	for i, l := range lines {
		if len(l) >= indent && indent > 0 {
			lines[i] = l[indent:]
		}
	}
	return strings.Join(lines, "\n")
}

// script is a testscript file: commands, then files.
func script(commands string, files map[string]string) string {
	var b strings.Builder
	b.WriteString(commands)
	names := make([]string, 0, len(files))
	for k := range files {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, name := range names {
		fmt.Fprintf(&b, "-- %s --\n%s", name, files[name])
	}
	return b.String()
}

const secretRE = `[0-9A-Za-z]{38}`

// readmeRecipes build, from a README block, the script that runs it and
// checks what it did.
var readmeRecipes = map[string]func(*testing.T, readmeBlock) string{
	// Installing from a checkout really builds keyctl, with nothing but Go
	// (and the module cache the tests were built from).
	"quickstart-install": func(t *testing.T, b readmeBlock) string {
		return script(`[remote] skip 'installs and runs a local keyctl'
[short] skip 'builds keyctl'
env GOPATH=$WORK/gopath
cd $KEYCTL_REPO
exec sh -e $WORK/install.sh
stdout '\Ask_live_`+secretRE+`\n\z'
exists $WORK/gopath/bin/keyctl
cd $WORK
exec keyctl list --env production -o json
jq 'map(select(.name != "ops")) | length == 1'
`, map[string]string{"install.sh": b.text})
	},
	"quickstart": func(t *testing.T, b readmeBlock) string {
		return script(`exec sh -e quickstart.sh
stdout '^may be used$'
stdout '^billing +key_'
exec cat gh/BILLING_API_KEY
stdout '\Ask_live_`+secretRE+`\n\z'
exec keyctl show billing -o json
jq '.status == "revoked" and .revoke_reason == "leaked in a CI log" and .rotated_at != null'
`, map[string]string{"quickstart.sh": shellLines(b.text)})
	},
	"create": func(t *testing.T, b readmeBlock) string {
		return script(`exec sh -e create.sh
jq '.quota == 1000 and .metadata.team == "billing" and .allowed_ips == ["10.0.0.0/8"] and (.secret | startswith("sk_test_"))'
stderr -count=2 '^::add-mask::sk_(test|live)_'
exec cat deploy.key
stdout '\Ask_test_`+secretRE+`\n\z'
exec cat gh/API_KEY
stdout '\Ask_live_`+secretRE+`\n\z'
stdin gh/API_KEY
exec keyctl verify --scope sdk --env production
`, map[string]string{"create.sh": shellLines(b.text)})
	},
	// Bootstrap twice: the second run changes nothing and sets no secret.
	"gha-bootstrap": func(t *testing.T, b readmeBlock) string {
		return script(`exec sh -e bootstrap.sh
! stdout .
exec cat gh.log
stdout '\Asecret set API_KEY --env staging --repo acme/shop\n\z'
exec cat gh/API_KEY
stdout '\Ask_test_`+secretRE+`\n\z'
! exists key.txt
stdin gh/API_KEY
exec keyctl verify --scope sdk --env staging
exec sh -e bootstrap.sh
! stdout .
stderr 'already exists and is active; nothing was created'
exec cat gh.log
stdout '\Asecret set API_KEY --env staging --repo acme/shop\n\z'
`, map[string]string{"bootstrap.sh": githubJob(t, b, "bootstrap")})
	},
	// The new secret reaches gh alone; the old one works for 48 hours.
	"gha-rotate": func(t *testing.T, b readmeBlock) string {
		return script(`exec keyctl create --name app-production --env production --scope sdk --secret-file old.key
exec sh -e rotate.sh
! stdout .
exec cat gh.log
stdout '\Asecret set API_KEY --env production --repo acme/shop\n\z'
exec cat gh/API_KEY
stdout '\Ask_live_`+secretRE+`\n\z'
! exists key.txt
stdin gh/API_KEY
exec keyctl verify --env production
stdin old.key
exec keyctl verify --env production
clock advance 49h
stdin old.key
status 12 exec keyctl verify
stdin gh/API_KEY
exec keyctl verify
`, map[string]string{"rotate.sh": githubJob(t, b, "rotate")})
	},
	// The gate passes, silently, for the deploy key, and fails otherwise.
	"gha-gate": func(t *testing.T, b readmeBlock) string {
		return script(`exec keyctl create --name deploy --env production --scope deploy --secret-file api.key
exec sh -e gate.sh
! stdout .
! stderr .
exec keyctl revoke deploy --yes
! exec sh -e gate.sh
! stdout .
`, map[string]string{"gate.sh": githubJob(t, b, "")})
	},
	// $GITHUB_ENV gets one line; the job log masks the secret it holds.
	"gha-fresh": func(t *testing.T, b readmeBlock) string {
		return script(`env PR=42
exec sh -c 'sh -e fresh.sh 2>fresh.err'
! stdout .
exec cat github_env
stdout '\AAPI_KEY=sk_test_`+secretRE+`\n\z'
exec sh -c 'grep "^::add-mask::" fresh.err | cut -c13- > masked; cut -c9- github_env > plain; cmp masked plain && echo masked'
stdout '\Amasked\n\z'
exec keyctl show pr-42 -o json
jq '.expires_at != null'
`, map[string]string{"fresh.sh": "set -e\n" + shellLines(b.text)})
	},
	"gitlab": func(t *testing.T, b readmeBlock) string {
		return script(`env CI_API_V4_URL=https://gitlab.example.com/api/v4
env CI_PROJECT_ID=7
env GITLAB_ADMIN_TOKEN=glpat-admin
exec sh -e bootstrap.sh
! stdout .
exec cat curl.log
stdout '\APOST https://gitlab.example.com/api/v4/projects/7/variables key=API_KEY value=<key.txt masked=true environment_scope=staging\n\z'
exec cat curl/1.value
stdout '\Ask_test_`+secretRE+`\n\z'
! exists key.txt
exec sh -e bootstrap.sh
exec cat curl.log
stdout -count=1 '^POST '

exec keyctl create --name app-production --env production --secret-file old.key
exec sh -e rotate.sh
! stdout .
exec cat curl.log
stdout '^PUT https://gitlab.example.com/api/v4/projects/7/variables/API_KEY\?filter\[environment_scope\]=production value=<key.txt$'
exec cat curl/2.value
stdout '\Ask_live_`+secretRE+`\n\z'
stdin curl/2.value
exec keyctl verify --env production

exec keyctl create --name deploy --env production --scope deploy --secret-file api.key
chmod 755 deploy.sh
exec sh -c 'API_KEY=$(cat api.key) sh -e deploy-job.sh'
stdout '\Adeployed\n\z'
! stderr .
exec keyctl revoke deploy --yes
! exec sh -c 'API_KEY=$(cat api.key) sh -e deploy-job.sh'
! stdout deployed
`, map[string]string{
			"bootstrap.sh":  gitlabJob(t, b, "bootstrap-staging"),
			"rotate.sh":     gitlabJob(t, b, "rotate-production"),
			"deploy-job.sh": gitlabJob(t, b, "deploy"),
			"deploy.sh":     "echo deployed\n",
		})
	},
}
