module github.com/petrel-mail/petrel/services/imap

go 1.26.0
