module github.com/keyctl/keyctl

go 1.26.0
