// Package specs holds the built-in ISO 8583 specifications as embedded YAML files and the loader that reads
// them and a user's own spec files, rejecting impossible specs with the file and line at fault.
package specs
