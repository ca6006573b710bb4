package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/railswitch/railswitch/hsm"
)

func init() { rootCmd.AddCommand(newKeysCmd()) }

// defaultKeyStore is the key store file the keys and hsm commands use without --keystore.
const defaultKeyStore = "keys.json"

// newKeysCmd builds the "keys" command tree (key ceremonies); each call returns fresh flags.
func newKeysCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "keys",
		Short: "Key ceremonies: local master key, key store, key import and listing",
		Long: `Manage the software security module's key store: a JSON file of named, versioned keys, each encrypted
under the local master key (LMK). The LMK comes from --lmk-file, else $SWITCH_LMK (64 hex digits), else the
file named by $SWITCH_LMK_FILE; never from the YAML configuration. No command prints a clear key.`,
		Args: cobra.NoArgs,
	}
	c.PersistentFlags().String("keystore", defaultKeyStore, "key store file")
	c.PersistentFlags().String("lmk-file", "", "file holding the LMK (default $SWITCH_LMK, then $SWITCH_LMK_FILE)")
	c.AddCommand(newKeysInitCmd(), newKeysImportCmd(), newKeysListCmd(), newKeysRotateCmd())
	return c
}

// openStoreWithLMK opens the key store and the LMK it was made under; another LMK is refused.
func openStoreWithLMK(cmd *cobra.Command) (*hsm.KeyStore, *hsm.LMK, error) {
	path, _ := cmd.Flags().GetString("keystore")
	lmkFile, _ := cmd.Flags().GetString("lmk-file")
	store, err := hsm.OpenKeyStore(path)
	if err != nil {
		return nil, nil, err
	}
	lmk, err := hsm.LoadLMK(lmkFile)
	if err != nil {
		return nil, nil, err
	}
	if err := store.CheckLMK(lmk.CheckValue()); err != nil {
		return nil, nil, err
	}
	return store, lmk, nil
}

func newKeysInitCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "init [--keystore FILE] [--lmk-file FILE]",
		Short: "Create a new LMK (written to a 0600 file) and a new, empty key store",
		Long: `Create a new local master key and write it, as 64 hex digits, to a new file readable by its owner only
(--lmk-file, default: lmk.key beside the key store), then create an empty key store for it. Neither file may
exist already. Keep the LMK file apart from the key store and its backups.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, _ := cmd.Flags().GetString("keystore")
			lmkFile, _ := cmd.Flags().GetString("lmk-file")
			if lmkFile == "" {
				lmkFile = filepath.Join(filepath.Dir(path), "lmk.key")
			}
			if _, err := os.Stat(path); err == nil {
				return fmt.Errorf("key store %s already exists", path)
			}
			lmk, hexKey, err := hsm.GenerateLMK(rand.Reader)
			if err != nil {
				return err
			}
			if err := hsm.WriteLMKFile(lmkFile, hexKey); err != nil {
				return err
			}
			if _, err := hsm.CreateKeyStore(path, lmk.CheckValue()); err != nil {
				os.Remove(lmkFile)
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "LMK written to %s (mode 0600), check value %s\n", lmkFile, lmk.CheckValue())
			fmt.Fprintf(w, "key store %s created, store version 1\n", path)
			if abs, err := filepath.Abs(lmkFile); err == nil {
				lmkFile = abs
			}
			fmt.Fprintf(w, "give the switch the LMK with %s=%s\n", hsm.EnvLMKFile, lmkFile)
			return nil
		},
	}
	return c
}

// readSecretHex returns the hex value of a flag; "-" reads one line from standard input instead, which
// keeps key components out of the shell history.
func readSecretHex(in *bufio.Reader, flag, v string) ([]byte, error) {
	if v == "-" {
		line, err := in.ReadString('\n')
		if err != nil && line == "" {
			return nil, fmt.Errorf("--%s -: nothing on standard input", flag)
		}
		v = strings.TrimSpace(line)
	}
	b, err := hex.DecodeString(strings.ReplaceAll(v, " ", ""))
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("--%s must be hex digits (an even number of them)", flag) // never echo a key
	}
	return b, nil
}

func newKeysImportCmd() *cobra.Command {
	var name, typeName, algName, kcv, under, keyHex string
	var components, componentKCVs []string
	c := &cobra.Command{
		Use:   "import --name N --type T (--component HEX --component HEX [--component HEX] | --under ZMK --key HEX) --kcv HEX",
		Short: "Store a key formed from 2 or 3 clear components, or received under a ZMK or TMK",
		Long: `Import a key into the key store under --name (a new version when the name exists).

Key ceremony: give 2 or 3 --component values (each as long as the key); the key is their XOR, with odd parity
set for TDES. --component - reads the component from standard input, one line each, so it stays out of the
shell history. --component-kcv gives each component's own check value, in the same order, to catch a typing
error. From a bank or a terminal: --under names a ZMK or TMK in the store and --key is the key encrypted under
it (ECB). Either way --kcv, the check value of the key (6 hex digits), is required.

Types: ZMK TMK TPK ZPK TAK ZAK TDK DEK BDK. --alg tdes (8, 16 or 24 bytes) or aes (16, 24 or 32 bytes).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			typ, err := hsm.ParseKeyType(typeName)
			if err != nil {
				return err
			}
			alg, err := hsm.ParseAlgorithm(algName)
			if err != nil {
				return err
			}
			if kcv == "" {
				return errors.New("--kcv is required: the check value of the key, from the key's custodians or sender")
			}
			if (len(components) > 0) == (under != "") {
				return errors.New("give either --component (2 or 3 times) or --under with --key")
			}
			store, lmk, err := openStoreWithLMK(cmd)
			if err != nil {
				return err
			}
			sw := hsm.NewSoftware(lmk, nil)
			in := bufio.NewReader(cmd.InOrStdin())
			var k hsm.Key
			if under != "" {
				kek, err := store.Get(under)
				if err != nil {
					return err
				}
				enc, err := readSecretHex(in, "key", keyHex)
				if err != nil {
					return err
				}
				k, err = sw.ImportKey(cmd.Context(), hsm.ImportKeyRequest{Name: name, Spec: hsm.Spec{Type: typ, Algorithm: alg, Length: len(enc)},
					Under: kek, Encrypted: enc, KCV: kcv})
				if err != nil {
					return err
				}
			} else {
				if len(componentKCVs) > 0 && len(componentKCVs) != len(components) {
					return fmt.Errorf("%d --component-kcv values for %d components", len(componentKCVs), len(components))
				}
				req := hsm.ComponentsRequest{Name: name, KCV: kcv}
				for i, v := range components {
					b, err := readSecretHex(in, "component", v)
					if err != nil {
						return err
					}
					defer clear(b)
					comp := hsm.Component{Value: b}
					if len(componentKCVs) > 0 {
						comp.KCV = componentKCVs[i]
					}
					req.Components = append(req.Components, comp)
				}
				req.Spec = hsm.Spec{Type: typ, Algorithm: alg, Length: len(req.Components[0].Value)}
				if k, err = sw.ImportComponents(cmd.Context(), req); err != nil {
					return err
				}
			}
			if k, err = store.Put(k); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %s version %d: %v %v-%d, check value %s (store version %d)\n",
				k.Name, k.Version, k.Type, k.Algorithm, k.Length*8, k.KCV, store.Version())
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&name, "name", "", `key name, e.g. "acq/ccb/zmk" or "term/22003600/tmk" (required)`)
	f.StringVar(&typeName, "type", "", "key type: ZMK TMK TPK ZPK TAK ZAK TDK DEK BDK (required)")
	f.StringVar(&algName, "alg", "tdes", "key algorithm: tdes or aes")
	f.StringArrayVar(&components, "component", nil, `clear key component in hex, 2 or 3 times ("-" reads it from standard input)`)
	f.StringArrayVar(&componentKCVs, "component-kcv", nil, "check value of each component, in order (optional)")
	f.StringVar(&under, "under", "", "name of the ZMK or TMK in the store that --key is encrypted under")
	f.StringVar(&keyHex, "key", "", `the key encrypted under --under, in hex ("-" reads it from standard input)`)
	f.StringVar(&kcv, "kcv", "", "check value of the key, 6 hex digits (required)")
	c.MarkFlagRequired("name")
	c.MarkFlagRequired("type")
	return c
}

// keyListing is one key as "keys list --json" shows it: no cryptogram, never a clear key.
type keyListing struct {
	Name      string `json:"name"`
	Version   int    `json:"version"`
	Type      string `json:"type"`
	Algorithm string `json:"algorithm"`
	Bits      int    `json:"bits"`
	KCV       string `json:"kcv"`
}

func newKeysListCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "list [--keystore FILE] [--json]",
		Short: "List the stored keys: names, versions, types, check values (never clear keys)",
		Long: `List every version of every key in the key store with its type, algorithm, size and check value.
The LMK is not needed: the store holds no clear key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, _ := cmd.Flags().GetString("keystore")
			store, err := hsm.OpenKeyStore(path)
			if err != nil {
				return err
			}
			keys := store.List()
			rows := make([]keyListing, len(keys))
			for i, k := range keys {
				rows[i] = keyListing{k.Name, k.Version, k.Type.String(), k.Algorithm.String(), k.Length * 8, k.KCV}
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(w).Encode(map[string]any{"store_version": store.Version(), "lmk_check": store.LMKCheck(), "keys": rows})
			}
			fmt.Fprintf(w, "key store %s, version %d, LMK check value %s\n", path, store.Version(), store.LMKCheck())
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tTYPE\tALGORITHM\tBITS\tKCV")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%s\n", r.Name, r.Version, r.Type, r.Algorithm, r.Bits, r.KCV)
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object: store_version, lmk_check and keys")
	return c
}

func newKeysRotateCmd() *cobra.Command {
	var newFile string
	c := &cobra.Command{
		Use:   "rotate-lmk --new-lmk-file FILE [--keystore FILE] [--lmk-file FILE]",
		Short: "Re-encrypt every key of the store under a new LMK",
		Long: `Re-encrypt every version of every key from the current LMK to a new one. --new-lmk-file names the new
LMK: it is used when the file exists, else a new LMK is created in it (mode 0600). Each key's check value is
recomputed on the way and must not change; the store is saved only when every key made it. Keep the old LMK
until the switch runs with the new one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if newFile == "" {
				return errors.New("--new-lmk-file is required")
			}
			store, oldLMK, err := openStoreWithLMK(cmd)
			if err != nil {
				return err
			}
			var newLMK *hsm.LMK
			created := false
			if _, err := os.Stat(newFile); err == nil {
				if newLMK, err = hsm.LoadLMKFile(newFile); err != nil {
					return err
				}
			} else {
				var hexKey string
				if newLMK, hexKey, err = hsm.GenerateLMK(rand.Reader); err != nil {
					return err
				}
				if err := hsm.WriteLMKFile(newFile, hexKey); err != nil {
					return err
				}
				created = true
			}
			if newLMK.CheckValue() == oldLMK.CheckValue() {
				return errors.New("the new LMK is the current one")
			}
			if err := store.RotateLMK(oldLMK, newLMK, rand.Reader); err != nil {
				if created {
					os.Remove(newFile)
				}
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%d keys re-encrypted from LMK %s to LMK %s; check values unchanged (store version %d)\n",
				len(store.List()), oldLMK.CheckValue(), newLMK.CheckValue(), store.Version())
			if created {
				fmt.Fprintf(w, "new LMK written to %s (mode 0600)\n", newFile)
			}
			return nil
		},
	}
	c.Flags().StringVar(&newFile, "new-lmk-file", "", "file of the new LMK (created when it does not exist)")
	return c
}
