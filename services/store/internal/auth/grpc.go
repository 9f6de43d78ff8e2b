package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Rule is what a principal must be to call one gRPC method.
type Rule struct {
	// Public methods need no token at all (health checks).
	Public bool
	// Kinds may call the method. A service principal additionally needs
	// Capability; an operator holds every capability.
	Kinds      []Kind
	Capability Capability
}

func (r Rule) allows(p Principal) bool {
	if !slices.Contains(r.Kinds, p.Kind) {
		return false
	}
	if p.Kind == KindService {
		return r.Capability != "" && p.Has(r.Capability)
	}
	return true
}

// Rules map a full gRPC method name ("/package.Service/Method") to its
// Rule. A method that is not listed is denied.
type Rules map[string]Rule

var (
	sessionOnly  = Rule{Kinds: []Kind{KindSession}}
	adminRule    = Rule{Kinds: []Kind{KindOperator, KindTenantAdmin}}
	operatorOnly = Rule{Kinds: []Kind{KindOperator}}
)

// StoreRules returns the rules of the store's API (proto/petrel/store/v1):
// mailbox and message calls act for a logged-in account, Deliver and
// ResolveRecipient need the capability of a service, Authenticate a
// service that logs users in, and the admin API an operator or tenant
// admin (tenants themselves only an operator). The gRPC health service is
// public so that probes need no token; reflection is for operators.
func StoreRules() Rules {
	r := Rules{
		storev1.DirectoryService_Authenticate_FullMethodName:     {Kinds: []Kind{KindService, KindOperator}, Capability: CapAuthenticate},
		storev1.DirectoryService_ResolveRecipient_FullMethodName: {Kinds: []Kind{KindService, KindOperator}, Capability: CapResolveRecipient},
		storev1.DirectoryService_CanSendAs_FullMethodName:        sessionOnly,
		storev1.MessageService_Deliver_FullMethodName:            {Kinds: []Kind{KindService, KindOperator}, Capability: CapDeliver},
		storev1.MessageService_DeliverBatch_FullMethodName:       {Kinds: []Kind{KindService, KindOperator}, Capability: CapDeliver},
		storev1.MessageService_HoldObject_FullMethodName:         {Kinds: []Kind{KindService, KindOperator}, Capability: CapDeliver},
		storev1.MessageService_ReleaseObject_FullMethodName:      {Kinds: []Kind{KindService, KindOperator}, Capability: CapDeliver},
		// Only the delivery service reads private keys; operators manage
		// keys through AdminService and never see them.
		storev1.DKIMService_GetSigningKey_FullMethodName: {Kinds: []Kind{KindService}, Capability: CapDKIMKey},

		"/grpc.health.v1.Health/Check": {Public: true},
		"/grpc.health.v1.Health/List":  {Public: true},
		"/grpc.health.v1.Health/Watch": {Public: true},
		// Reflection describes the API to grpcurl; only operators debug
		// with it.
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      operatorOnly,
		"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": operatorOnly,
	}
	addService := func(sd grpc.ServiceDesc, rule Rule) {
		for _, m := range sd.Methods {
			name := "/" + sd.ServiceName + "/" + m.MethodName
			if _, ok := r[name]; !ok {
				r[name] = rule
			}
		}
		for _, s := range sd.Streams {
			name := "/" + sd.ServiceName + "/" + s.StreamName
			if _, ok := r[name]; !ok {
				r[name] = rule
			}
		}
	}
	r[storev1.AdminService_CreateTenant_FullMethodName] = operatorOnly
	r[storev1.AdminService_DeleteTenant_FullMethodName] = operatorOnly
	addService(storev1.AdminService_ServiceDesc, adminRule)
	addService(storev1.MailboxService_ServiceDesc, sessionOnly)
	addService(storev1.MessageService_ServiceDesc, sessionOnly)
	return r
}

// InterceptorOptions configure the server interceptors.
type InterceptorOptions struct {
	Tokens *Tokens
	// Rules; StoreRules() when nil.
	Rules Rules
	// Logger records why a call was refused (never sent to the client);
	// slog.Default when nil.
	Logger *slog.Logger
}

// Interceptors check the caller of every gRPC call.
type Interceptors struct {
	tokens *Tokens
	rules  Rules
	log    *slog.Logger
}

// NewInterceptors returns the server interceptors.
func NewInterceptors(opts InterceptorOptions) (*Interceptors, error) {
	if opts.Tokens == nil {
		return nil, errors.New("auth: interceptors need tokens")
	}
	if opts.Rules == nil {
		opts.Rules = StoreRules()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Interceptors{tokens: opts.Tokens, rules: maps.Clone(opts.Rules), log: opts.Logger}, nil
}

// ServerOptions returns the grpc.ServerOptions that install both
// interceptors.
func (in *Interceptors) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(in.Unary), grpc.ChainStreamInterceptor(in.Stream)}
}

// Unary is the grpc.UnaryServerInterceptor.
func (in *Interceptors) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := in.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// Stream is the grpc.StreamServerInterceptor.
func (in *Interceptors) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := in.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, &principalStream{ServerStream: ss, ctx: ctx})
}

type principalStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *principalStream) Context() context.Context { return s.ctx }

func (in *Interceptors) authorize(ctx context.Context, method string) (context.Context, error) {
	rule, ok := in.rules[method]
	if !ok {
		in.log.WarnContext(ctx, "call to a method without an auth rule refused", "method", method)
		return nil, errPermissionDenied()
	}
	if rule.Public {
		return ctx, nil
	}
	token, err := bearerToken(ctx)
	if err != nil {
		in.log.InfoContext(ctx, "call refused", "method", method, "err", err)
		return nil, errUnauthenticated()
	}
	p, err := in.tokens.Verify(token)
	if err != nil {
		in.log.InfoContext(ctx, "call refused", "method", method, "err", err)
		return nil, errUnauthenticated()
	}
	if !rule.allows(p) {
		in.log.WarnContext(ctx, "call refused: principal lacks permission", "method", method, "kind", p.Kind.String(), "service", p.Service, "tenant_id", p.TenantID)
		return nil, errPermissionDenied()
	}
	return NewContext(ctx, p), nil
}

// bearerToken reads the one "authorization: Bearer <token>" header
// (RFC 6750 §2.1; the scheme is case-insensitive).
func bearerToken(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) != 1 {
		return "", fmt.Errorf("want one authorization header, got %d", len(vals))
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", errors.New("authorization header is not a bearer token")
	}
	return token, nil
}

// statusWithReason builds a status with the ErrorInfo detail every store
// error carries. The message is fixed text, never an internal error.
func statusWithReason(c codes.Code, msg string, reason storev1.Reason) error {
	st := status.New(c, msg)
	if withDetail, err := st.WithDetails(&storev1.ErrorInfo{Reason: reason}); err == nil {
		st = withDetail
	}
	return st.Err()
}

func errUnauthenticated() error {
	return statusWithReason(codes.Unauthenticated, "authentication required", storev1.Reason_REASON_AUTH_FAILED)
}

func errPermissionDenied() error {
	return statusWithReason(codes.PermissionDenied, "permission denied", storev1.Reason_REASON_UNSPECIFIED)
}

// RequireTenant checks that the principal in ctx may administer tenantID.
// An operator may administer any tenant. A tenant admin asking about
// another tenant gets NOT_FOUND (REASON_NOT_FOUND), exactly what a tenant
// that does not exist gets, because the admin API promises that other
// tenants' objects are invisible. Any other principal gets
// PERMISSION_DENIED, and no principal at all UNAUTHENTICATED.
func RequireTenant(ctx context.Context, tenantID string) error {
	p, ok := FromContext(ctx)
	switch {
	case !ok:
		return errUnauthenticated()
	case p.CanAccessTenant(tenantID):
		return nil
	case p.Kind == KindTenantAdmin:
		return statusWithReason(codes.NotFound, "not found", storev1.Reason_REASON_NOT_FOUND)
	default:
		return errPermissionDenied()
	}
}

// StatusError turns the errors of Authenticate into the gRPC status the
// directory contract promises (proto/petrel/store/v1/directory.proto). Any
// other error becomes INTERNAL without its text; the caller logs it.
func StatusError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrAuthFailed):
		return statusWithReason(codes.Unauthenticated, "authentication failed", storev1.Reason_REASON_AUTH_FAILED)
	case errors.Is(err, ErrDisabled):
		return statusWithReason(codes.PermissionDenied, "account disabled", storev1.Reason_REASON_DISABLED)
	case errors.Is(err, ErrThrottled):
		return statusWithReason(codes.ResourceExhausted, "too many failed logins, try again later", storev1.Reason_REASON_THROTTLED)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	default:
		return statusWithReason(codes.Internal, "internal error", storev1.Reason_REASON_UNSPECIFIED)
	}
}

// TokenCredentials sends a bearer token with every call; pass it to
// grpc.WithPerRPCCredentials (or grpc.PerRPCCredentials for one call).
type TokenCredentials struct {
	// Token returns the token to send; it is called for every call so a
	// renewed token is picked up.
	Token func(ctx context.Context) (string, error)
	// AllowInsecure lets the token travel over a connection without
	// transport security. Set it only for loopback or in-process
	// connections (see IsLoopbackTarget), where nobody can listen in.
	AllowInsecure bool
}

var _ credentials.PerRPCCredentials = TokenCredentials{}

// StaticToken returns credentials that always send token.
func StaticToken(token string, allowInsecure bool) TokenCredentials {
	return TokenCredentials{
		Token:         func(context.Context) (string, error) { return token, nil },
		AllowInsecure: allowInsecure,
	}
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (c TokenCredentials) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	if !c.AllowInsecure {
		ri, _ := credentials.RequestInfoFromContext(ctx)
		if err := credentials.CheckSecurityLevel(ri.AuthInfo, credentials.PrivacyAndIntegrity); err != nil {
			return nil, fmt.Errorf("auth: refusing to send a token without transport security: %w", err)
		}
	}
	token, err := c.Token(ctx)
	if err != nil {
		return nil, fmt.Errorf("auth: get token: %w", err)
	}
	return map[string]string{"authorization": "Bearer " + token}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials. The
// check is done in GetRequestMetadata instead, so that AllowInsecure can
// opt out for loopback.
func (c TokenCredentials) RequireTransportSecurity() bool { return false }

// WithToken returns ctx with the bearer token added to outgoing metadata,
// for a client that makes calls for many users over one connection (a
// frontend sending each user's session token). Do not combine it with
// TokenCredentials on the same call: two authorization headers are refused.
func WithToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// IsLoopbackTarget reports whether a dial target stays on this machine: a
// unix socket, "localhost", or a loopback IP literal, with or without a
// port and the dns/passthrough scheme.
func IsLoopbackTarget(target string) bool {
	if strings.HasPrefix(target, "unix:") || strings.HasPrefix(target, "unix-abstract:") {
		return true
	}
	for _, scheme := range []string{"dns:///", "passthrough:///"} {
		target = strings.TrimPrefix(target, scheme)
	}
	host := target
	if h, _, err := net.SplitHostPort(target); err == nil {
		host = h
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
