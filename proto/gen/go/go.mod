module github.com/petrel-mail/petrel/proto/gen/go

go 1.26.0
