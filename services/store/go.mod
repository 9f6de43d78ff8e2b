module github.com/petrel-mail/petrel/services/store

go 1.26.0
