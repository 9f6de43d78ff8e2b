module github.com/petrel-mail/petrel/ctl

go 1.26.0
