package server

import (
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login): prompt "Username:", then "Password:".
// go-sasl has only the client. An initial response, if any, is the user
// name.
type loginServer struct {
	check    func(username, password string) error
	username string
	state    int
}

var errLoginSyntax = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Malformed LOGIN exchange"}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.state {
	case 0:
		l.state = 1
		if response == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		l.username = string(response)
		l.state = 2
		return []byte("Password:"), false, nil
	case 2:
		l.state = 3
		return nil, true, l.check(l.username, string(response))
	}
	return nil, false, errLoginSyntax
}

var _ sasl.Server = (*loginServer)(nil)
