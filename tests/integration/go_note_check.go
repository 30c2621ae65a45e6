// Independent check of a vpngw checkpoint with golang.org/x/mod/sumdb/note (Debian's
// golang-golang-x-mod-dev): the log's signature through note.NewVerifier, and each
// witness's cosignature/v1 line through a note.Verifier written here from the C2SP
// tlog-cosignature text.
//
// usage: go run go_note_check.go CHECKPOINT_FILE LOG_VKEY [WITNESS_VKEY...]
package main

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

type cosignatureV1 struct {
	name string
	hash uint32
	key  ed25519.PublicKey
}

func (v cosignatureV1) Name() string    { return v.name }
func (v cosignatureV1) KeyHash() uint32 { return v.hash }

// Verify: sig is the u64 big-endian timestamp then the Ed25519 signature over
// "cosignature/v1\ntime <timestamp>\n" and the note text.
func (v cosignatureV1) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	ts := binary.BigEndian.Uint64(sig[:8])
	signed := append([]byte(fmt.Sprintf("cosignature/v1\ntime %d\n", ts)), msg...)
	return ed25519.Verify(v.key, signed, sig[8:])
}

func parseWitnessVkey(vkey string) (cosignatureV1, error) {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		return cosignatureV1{}, fmt.Errorf("malformed witness vkey %q", vkey)
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 1+ed25519.PublicKeySize || raw[0] != 0x04 {
		return cosignatureV1{}, fmt.Errorf("witness vkey %q is not type 0x04", vkey)
	}
	sum := sha256.Sum256(append([]byte(parts[0]+"\n"), raw...))
	hash := binary.BigEndian.Uint32(sum[:4])
	if fmt.Sprintf("%08x", hash) != parts[1] {
		return cosignatureV1{}, fmt.Errorf("witness vkey %q: key id is not %08x", vkey, hash)
	}
	return cosignatureV1{parts[0], hash, ed25519.PublicKey(raw[1:])}, nil
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 3 {
		fail("usage: go_note_check CHECKPOINT_FILE LOG_VKEY [WITNESS_VKEY...]")
	}
	msg, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail("%v", err)
	}
	logVerifier, err := note.NewVerifier(os.Args[2])
	if err != nil {
		fail("log vkey: %v", err)
	}
	// The log key alone: Go must ignore the cosignature lines and accept the log's.
	n, err := note.Open(msg, note.VerifierList(logVerifier))
	if err != nil {
		fail("note.Open with the log key: %v", err)
	}
	fmt.Println("log signature ok:", strings.SplitN(n.Text, "\n", 2)[0])
	witnesses := os.Args[3:]
	if len(n.UnverifiedSigs) < len(witnesses) {
		fail("expected %d unverified (cosignature) lines, got %d", len(witnesses), len(n.UnverifiedSigs))
	}
	verifiers := []note.Verifier{logVerifier}
	for _, vkey := range witnesses {
		v, err := parseWitnessVkey(vkey)
		if err != nil {
			fail("%v", err)
		}
		verifiers = append(verifiers, v)
	}
	n, err = note.Open(msg, note.VerifierList(verifiers...))
	if err != nil {
		fail("note.Open with the witness keys: %v", err)
	}
	for _, sig := range n.Sigs {
		if sig.Name != logVerifier.Name() {
			fmt.Println("cosignature ok:", sig.Name)
		}
	}
	if len(n.Sigs) != 1+len(witnesses) {
		fail("expected %d verified signatures, got %d", 1+len(witnesses), len(n.Sigs))
	}
}
