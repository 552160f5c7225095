package keys

import (
	"crypto/rand"
	"fmt"
	"math/big"

	"github.com/keyctl/keyctl/apikey"
)

// NewID returns a public, non-secret key id: "key_" and 16 base62 characters.
func NewID() (string, error) {
	s, err := apikey.RandomID(16)
	if err != nil {
		return "", err
	}
	return "key_" + s, nil
}

var (
	adjectives = []string{"amber", "brave", "calm", "clever", "crisp", "eager", "fancy", "gentle",
		"golden", "happy", "jolly", "keen", "lively", "lucky", "mellow", "nimble", "proud", "quick",
		"quiet", "rapid", "silver", "steady", "sunny", "swift", "tidy", "vivid", "witty", "zesty"}
	nouns = []string{"badger", "beacon", "cedar", "comet", "falcon", "fern", "harbor", "heron",
		"lantern", "maple", "meadow", "otter", "pebble", "pine", "raven", "river", "robin", "saturn",
		"sparrow", "summit", "thistle", "tiger", "valley", "walrus", "willow", "zephyr"}
)

func pick(words []string) (string, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(int64(len(words))))
	if err != nil {
		return "", err
	}
	return words[n.Int64()], nil
}

// GenerateName returns a readable name, such as "swift-otter-4821", that
// inUse says no live key has; it gives up after a few tries.
func GenerateName(inUse func(name string) (bool, error)) (string, error) {
	for range 20 {
		a, err := pick(adjectives)
		if err != nil {
			return "", err
		}
		n, err := pick(nouns)
		if err != nil {
			return "", err
		}
		num, err := rand.Int(rand.Reader, big.NewInt(9000))
		if err != nil {
			return "", err
		}
		name := fmt.Sprintf("%s-%s-%d", a, n, 1000+num.Int64())
		if used, err := inUse(name); err != nil {
			return "", err
		} else if !used {
			return name, nil
		}
	}
	return "", fmt.Errorf("could not generate a free name: pass --name")
}
