package worker_test

import "github.com/aws/aws-sdk-go-v2/service/s3/types"

func checksumAlg(s string) types.ChecksumAlgorithm { return types.ChecksumAlgorithm(s) }
