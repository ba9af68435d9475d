// Package domaintest holds the test helpers the domain packages share: how a
// given/when/then table pins a refusal.
//
// It imports only package domain (and the standard library and go-cmp): it
// is domain test code, pure like the domain.
package domaintest
