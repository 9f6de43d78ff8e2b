module github.com/petrel-mail/petrel/services/pop3

go 1.26.0
