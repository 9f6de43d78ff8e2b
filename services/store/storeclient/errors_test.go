package storeclient

import (
	"errors"
	"io"
	"testing"

	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func withReason(c codes.Code, r storev1.Reason) error {
	st, err := status.New(c, "msg").WithDetails(&storev1.ErrorInfo{Reason: r})
	if err != nil {
		panic(err)
	}
	return st.Err()
}

func TestFromStatus(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   error
		want error
	}{
		{"reason wins over code", withReason(codes.FailedPrecondition, storev1.Reason_REASON_HAS_CHILDREN), ErrHasChildren},
		{"over quota", withReason(codes.ResourceExhausted, storev1.Reason_REASON_OVER_QUOTA), ErrOverQuota},
		{"throttled", withReason(codes.ResourceExhausted, storev1.Reason_REASON_THROTTLED), ErrThrottled},
		{"too big", withReason(codes.InvalidArgument, storev1.Reason_REASON_TOO_BIG), ErrTooBig},
		{"code without reason", status.Error(codes.Unavailable, "down"), ErrUnavailable},
		{"unspecified reason falls back to the code", withReason(codes.Internal, storev1.Reason_REASON_UNSPECIFIED), ErrInternal},
		{"unknown code", status.Error(codes.OutOfRange, "x"), ErrInternal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := FromStatus(tc.in)
			if !errors.Is(got, tc.want) {
				t.Fatalf("FromStatus(%v) = %v, want %v", tc.in, got, tc.want)
			}
			if status.Code(got) != status.Code(tc.in) {
				t.Fatalf("status code lost: %v", status.Code(got))
			}
			if FromStatus(got) != got {
				t.Fatal("mapping twice changed the error")
			}
		})
	}
	if FromStatus(nil) != nil || FromStatus(io.EOF) != io.EOF {
		t.Fatal("nil or io.EOF changed")
	}
	if err := FromStatus(status.Error(codes.Canceled, "canceled")); status.Code(err) != codes.Canceled || errors.Is(err, ErrInternal) {
		t.Fatalf("canceled: %v", err)
	}
	if Reason(withReason(codes.NotFound, storev1.Reason_REASON_NOT_FOUND)) != storev1.Reason_REASON_NOT_FOUND {
		t.Fatal("Reason")
	}
	var e *Error
	if !errors.As(FromStatus(status.Error(codes.Unavailable, "x")), &e) || !e.Temporary() {
		t.Fatal("unavailable is not temporary")
	}
}
