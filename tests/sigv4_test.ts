/**
 * SigV4 signing against AWS's published examples (Amazon S3 API Reference, "Signature
 * Calculations for the Authorization Header: Transferring Payload in a Single Chunk"): the
 * same keys, time and requests must give the same signatures. No server needed.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { canonicalQuery, EMPTY_SHA256, signRequest, uriEncode } from "../lib/backend/s3/sigv4.ts";

const credentials = {
  accessKeyId: "AKIAIOSFODNN7EXAMPLE",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
};
const base = {
  host: "examplebucket.s3.amazonaws.com",
  region: "us-east-1",
  credentials,
  now: new Date("2013-05-24T00:00:00Z"),
};

/** The signature of an Authorization header. */
const signature = (headers: Record<string, string>) => /Signature=([0-9a-f]{64})$/.exec(headers.authorization!)?.[1];

Deno.test("signRequest() gives AWS's published signatures", async (t) => {
  await t.step("GET Object with a Range header", () => {
    const headers = signRequest({
      ...base,
      method: "GET",
      path: "/test.txt",
      query: {},
      headers: { range: "bytes=0-9" },
      payloadHash: EMPTY_SHA256,
    });
    assert.equal(signature(headers), "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    assert.match(headers.authorization!, /SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,/);
  });
  await t.step("PUT Object with a payload, a storage class and a Date header, a key that needs encoding", () => {
    const body = "Welcome to Amazon S3.";
    const headers = signRequest({
      ...base,
      method: "PUT",
      path: `/${uriEncode("test$file.text", true)}`,
      query: {},
      headers: { date: "Fri, 24 May 2013 00:00:00 GMT", "x-amz-storage-class": "REDUCED_REDUNDANCY" },
      payloadHash: createHash("sha256").update(body).digest("hex"),
    });
    assert.equal(signature(headers), "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
  });
  await t.step("GET Bucket lifecycle: a sub-resource without a value", () => {
    const headers = signRequest({
      ...base,
      method: "GET",
      path: "/",
      query: { lifecycle: "" },
      headers: {},
      payloadHash: EMPTY_SHA256,
    });
    assert.equal(signature(headers), "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
  });
  await t.step("GET Bucket (list objects): query parameters sorted", () => {
    const headers = signRequest({
      ...base,
      method: "GET",
      path: "/",
      query: { prefix: "J", "max-keys": "2" },
      headers: {},
      payloadHash: EMPTY_SHA256,
    });
    assert.equal(signature(headers), "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
  });
});

Deno.test("uriEncode() and canonicalQuery() encode as SigV4 wants", () => {
  assert.equal(uriEncode("a b/c+d*~!", true), "a%20b/c%2Bd%2A~%21");
  assert.equal(uriEncode("a/b"), "a%2Fb");
  assert.equal(canonicalQuery({ prefix: "J", "max-keys": "2", empty: "" }), "empty=&max-keys=2&prefix=J");
});
