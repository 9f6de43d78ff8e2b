// Command benchdir is the store's directory as scripts/bench-smtp.sh needs
// it, so that petrel-smtp can be measured without PostgreSQL in the path:
// it serves storev1.DirectoryService over gRPC (every address of --domain
// is a local recipient of one tenant, every other address is remote) and
// the gRPC health service, writes the service token petrel-smtp presents,
// and creates the S3 bucket the run uses. It is a benchmark fixture, not
// a directory: RCPT lookups still cost a real gRPC round trip each.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	storev1 "github.com/petrel-mail/petrel/proto/gen/go/petrel/store/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

type directory struct {
	storev1.UnimplementedDirectoryServiceServer
	domain, token string
}

func (d directory) ResolveRecipient(ctx context.Context, req *storev1.ResolveRecipientRequest) (*storev1.ResolveRecipientResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("authorization"); len(v) != 1 || v[0] != "Bearer "+d.token {
		return nil, status.Error(codes.Unauthenticated, "bad service token")
	}
	addr := strings.ToLower(req.GetAddress())
	at := strings.LastIndexByte(addr, '@')
	if at < 1 {
		return nil, status.Error(codes.InvalidArgument, "not an address")
	}
	if addr[at+1:] == d.domain {
		return &storev1.ResolveRecipientResponse{Status: storev1.RecipientStatus_RECIPIENT_STATUS_LOCAL, TenantId: "bench"}, nil
	}
	return &storev1.ResolveRecipientResponse{Status: storev1.RecipientStatus_RECIPIENT_STATUS_NOT_LOCAL}, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "gRPC address")
	domain := flag.String("domain", "bench.test", "local domain")
	tokenFile := flag.String("token-file", "", "where to write the service token")
	addrFile := flag.String("addr-file", "", "where to write the bound address")
	s3Endpoint := flag.String("s3-endpoint", "", "S3 endpoint (creates --s3-bucket)")
	s3Bucket := flag.String("s3-bucket", "", "bucket to create")
	s3Access := flag.String("s3-access-key", "", "S3 access key")
	s3Secret := flag.String("s3-secret-key", "", "S3 secret key")
	flag.Parse()

	if *s3Bucket != "" {
		cl, err := minio.New(*s3Endpoint, &minio.Options{Creds: credentials.NewStaticV4(*s3Access, *s3Secret, "")})
		if err != nil {
			log.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		ok, err := cl.BucketExists(ctx, *s3Bucket)
		if err == nil && !ok {
			err = cl.MakeBucket(ctx, *s3Bucket, minio.MakeBucketOptions{})
		}
		cancel()
		if err != nil {
			log.Fatalf("bucket %s: %v", *s3Bucket, err)
		}
	}
	var raw [16]byte
	rand.Read(raw[:])
	token := hex.EncodeToString(raw[:])
	if err := os.WriteFile(*tokenFile, []byte(token+"\n"), 0o600); err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	gs := grpc.NewServer()
	storev1.RegisterDirectoryServiceServer(gs, directory{domain: *domain, token: token})
	healthgrpc.RegisterHealthServer(gs, health.NewServer())
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile, []byte(ln.Addr().String()), 0o600); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Fprintln(os.Stderr, "benchdir: serving on", ln.Addr())
	log.Fatal(gs.Serve(ln))
}
