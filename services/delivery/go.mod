module github.com/petrel-mail/petrel/services/delivery

go 1.26.0
