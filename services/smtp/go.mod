module github.com/petrel-mail/petrel/services/smtp

go 1.26.0
