"""moto's server (`moto_server`, same arguments), with one gap of moto 5.1 filled: the
tags of an S3 CreateBucket.

Since 2025 S3's CreateBucket takes the bucket's tags in its body
(`CreateBucketConfiguration/Tags/Tag/{Key,Value}`) and applies them with the create,
atomically: a general purpose bucket is never seen without them, and the caller needs
`s3:TagResource` for it. moto 5.1 parses only `LocationConstraint` from that body and
drops the tags. Here they are applied as S3 does: only when the call created the bucket
(a CreateBucket that answers BucketAlreadyOwnedByYou, or us-east-1's idempotent repeat,
leaves an existing bucket's tags alone), replacing nothing else. Everything else is
moto's.

A bucket whose name contains `drops-tags` keeps moto's own behaviour (its create's tags
are dropped), so that the suite also covers an S3-compatible server without the feature
(strata then tags the new bucket right after the create).

Not modelled: the `s3:TagResource` permission check (moto does not enforce IAM on S3
here) and S3's tag limits (50 tags, key 128 / value 256 characters), which strata's
own tags stay far inside.
"""

import sys

import xmltodict
from moto.s3 import responses
from moto.server import main

_put = responses.S3Response._bucket_response_put


def _create_tags(body):
    """The tags in a CreateBucket body, as a dict (empty when there are none)."""
    if not body:
        return {}
    conf = xmltodict.parse(body, force_list={"Tag": True}).get("CreateBucketConfiguration")
    tags = ((conf or {}).get("Tags") or {}).get("Tag") or []
    return {t["Key"]: t.get("Value") or "" for t in tags}


def _put_with_tags(self, request, bucket_name, querystring):
    creating = not querystring
    existed = creating and bucket_name in self.backend.buckets
    result = _put(self, request, bucket_name, querystring)
    if creating and not existed and "drops-tags" not in bucket_name and bucket_name in self.backend.buckets:
        tags = _create_tags(self.body)
        if tags:
            self.backend.put_bucket_tagging(bucket_name, tags)
    return result


responses.S3Response._bucket_response_put = _put_with_tags

if __name__ == "__main__":
    sys.exit(main())
