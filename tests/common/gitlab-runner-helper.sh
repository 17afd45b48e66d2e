#!/bin/sh
# A stand-in for GitLab Runner's gitlab-runner-helper in skiff's test helper image, over
# busybox. It implements the subcommands and flags the runner's generated scripts call for
# caches and artifacts, as the runner's commands/helpers/ do:
#   cache-archiver     (cache_archiver.go)      zip of the --path entries into --file
#   cache-extractor    (cache_extractor.go)     --file unzipped into the working directory
#   artifacts-uploader (artifacts_uploader.go)  zip of the --path entries, POSTed as the form
#                      file "artifacts.zip" to <url>/api/v4/jobs/<id>/artifacts with JOB-TOKEN
#   artifacts-downloader (artifacts_downloader.go) GET of the same path, unzipped
# Archives are zip (the helper's default format), entries stored, unix modes kept. What it
# does not implement (remote caches, --untracked, --exclude) fails loudly.
set -eu

die() {
	echo "gitlab-runner-helper: $*" >&2
	exit 1
}

# Little-endian binary integers.
le16() { printf "$(printf '\\%03o\\%03o' $(($1 & 255)) $(($1 >> 8 & 255)))"; }
le32() {
	le16 $(($1 & 65535))
	le16 $(($1 >> 16 & 65535))
}

# zip_write OUT LIST: a zip of the entries, one a line (relative paths).
zip_write() {
	z_out=$1
	z_central=$(mktemp)
	z_offset=0
	z_count=0
	: >"$z_out"
	while IFS= read -r z_entry; do
		z_name=$z_entry
		if [ -d "$z_entry" ]; then
			z_name="${z_entry%/}/"
			z_size=0
			z_crc=0
			z_type=16384
		else
			z_size=$(stat -c %s "$z_entry")
			z_crc=$((0x$(crc32 "$z_entry" | cut -d' ' -f1)))
			z_type=32768
		fi
		z_mode=$((z_type | 0$(stat -c %a "$z_entry")))
		z_length=${#z_name}
		{
			printf 'PK\003\004'
			le16 10
			le16 0
			le16 0
			le16 0
			le16 33
			le32 $z_crc
			le32 $z_size
			le32 $z_size
			le16 $z_length
			le16 0
			printf '%s' "$z_name"
			[ -d "$z_entry" ] || cat "$z_entry"
		} >>"$z_out"
		{
			printf 'PK\001\002'
			le16 $((3 << 8 | 20))
			le16 10
			le16 0
			le16 0
			le16 0
			le16 33
			le32 $z_crc
			le32 $z_size
			le32 $z_size
			le16 $z_length
			le16 0
			le16 0
			le16 0
			le16 0
			le32 $((z_mode << 16 | (z_type == 16384 ? 16 : 0)))
			le32 $z_offset
			printf '%s' "$z_name"
		} >>"$z_central"
		z_offset=$((z_offset + 30 + z_length + z_size))
		z_count=$((z_count + 1))
	done <<EOF
$2
EOF
	z_central_size=$(stat -c %s "$z_central")
	{
		cat "$z_central"
		printf 'PK\005\006'
		le16 0
		le16 0
		le16 $z_count
		le16 $z_count
		le32 $z_central_size
		le32 $z_offset
		le16 0
	} >>"$z_out"
	rm -f "$z_central"
}

# The entries for the --path patterns (one a line in $paths), relative to the working
# directory; the patterns are globs, as the runner's fileArchiver matches them.
entries() {
	printf '%s\n' "$paths" | while IFS= read -r pattern; do
		[ -n "$pattern" ] || continue
		for match in $pattern; do
			[ -e "$match" ] || continue
			find "${match%/}" -type d -o -type f
		done
	done | sort -u
}

# Flags: --name VALUE pairs, and --path repeated.
paths=""
file="" alternate="" url="" token="" id="" name="artifacts" expire_in="" format="" type=""
parse() {
	while [ $# -gt 0 ]; do
		flag=$1
		case $flag in
		--version | --untracked) ;;
		*)
			[ $# -ge 2 ] || die "$flag needs a value"
			value=$2
			shift
			;;
		esac
		case $flag in
		--version) ;;
		--file) file=$value ;;
		--alternate-file) alternate=$value ;;
		--path) paths="$paths
$value" ;;
		--url) url=$value ;;
		--token) token=$value ;;
		--id) id=$value ;;
		--name) name=$value ;;
		--expire-in) expire_in=$value ;;
		--artifact-format) format=$value ;;
		--artifact-type) type=$value ;;
		--timeout | --response-header-timeout | --env-file) ;;
		*) die "$flag is not implemented by the test helper" ;;
		esac
		shift
	done
}

# The query GitLab's client encodes, keys sorted, spaces as +.
query() {
	q=""
	[ -z "$format" ] || q="${q}&artifact_format=$format"
	[ -z "$type" ] || q="${q}&artifact_type=$type"
	[ -z "$expire_in" ] || q="${q}&expire_in=$(printf '%s' "$expire_in" | tr ' ' '+')"
	printf '%s' "${q#&}"
}

command=${1:-}
[ $# -eq 0 ] || shift
case $command in
--version)
	echo "Version:      0.0.0-skiff-test"
	;;
cache-archiver)
	parse "$@"
	[ -n "$file" ] || die "Missing --file"
	[ -z "$url" ] || die "remote caches are not implemented by the test helper"
	if [ -n "$alternate" ] && [ ! -e "$file" ] && [ -e "$alternate" ]; then
		mkdir -p "$(dirname "$file")"
		mv "$alternate" "$file"
	fi
	list=$(entries)
	if [ -z "$list" ]; then
		echo "WARNING: No files to cache."
		exit 0
	fi
	mkdir -p "$(dirname "$file")"
	chmod 0700 "$(dirname "$file")"
	tmp=$(mktemp "$(dirname "$file")/archive_XXXXXX")
	zip_write "$tmp" "$list"
	mv "$tmp" "$file"
	# The runner reads CACHE_METADATA from its environment only (--env-file is for remote
	# caches), so the local metadata is what the environment has.
	printf '%s' "${CACHE_METADATA:-"{}"}" >"$(dirname "$file")/metadata.json"
	echo "$(echo "$list" | wc -l) files cached in $file"
	;;
cache-extractor)
	parse "$@"
	[ -n "$file" ] || die "Missing cache file"
	[ -z "$url" ] || die "remote caches are not implemented by the test helper"
	if [ ! -e "$file" ]; then
		echo "WARNING: Cache file does not exist"
		exit 1
	fi
	unzip -o -q "$file"
	;;
artifacts-uploader)
	parse "$@"
	[ -n "$url" ] && [ -n "$token" ] || die "Missing runner credentials"
	list=$(entries)
	if [ -z "$list" ]; then
		echo "ERROR: No files to upload"
		exit 0
	fi
	zip=$(mktemp)
	body=$(mktemp)
	zip_write "$zip" "$list"
	boundary="skiff-test-$(date +%s)"
	{
		printf -- '--%s\r\n' "$boundary"
		printf 'Content-Disposition: form-data; name="file"; filename="%s.zip"\r\n' "$(basename "$name")"
		printf 'Content-Type: application/octet-stream\r\n\r\n'
		cat "$zip"
		printf '\r\n--%s--\r\n' "$boundary"
	} >"$body"
	# busybox wget posts a file only up to its first NUL: the request goes over nc.
	case $url in
	http://*) ;;
	*) die "$url: the test helper speaks plain http only" ;;
	esac
	rest=${url#http://}
	hostport=${rest%%/*}
	prefix=${rest#"$hostport"}
	host=${hostport%:*}
	port=80
	[ "$host" = "$hostport" ] || port=${hostport##*:}
	response=$({
		printf 'POST %s/api/v4/jobs/%s/artifacts?%s HTTP/1.1\r\n' "${prefix%/}" "$id" "$(query)"
		printf 'Host: %s\r\nJOB-TOKEN: %s\r\n' "$hostport" "$token"
		printf 'Content-Type: multipart/form-data; boundary=%s\r\n' "$boundary"
		printf 'Content-Length: %s\r\nConnection: close\r\n\r\n' "$(stat -c %s "$body")"
		cat "$body"
	} | nc "$host" "$port")
	status=$(printf '%s\n' "$response" | head -n 1 | cut -d' ' -f2)
	[ "$status" = 201 ] || die "Uploading artifacts to coordinator... failed: $(printf '%s\n' "$response" | head -n 1)"
	rm -f "$zip" "$body"
	echo "Uploading artifacts to coordinator... 201 Created"
	;;
artifacts-downloader)
	parse "$@"
	[ -n "$url" ] && [ -n "$token" ] && [ -n "$id" ] || die "Incomplete arguments"
	zip=$(mktemp)
	wget -q -O "$zip" --header "JOB-TOKEN: $token" "${url%/}/api/v4/jobs/$id/artifacts"
	echo "Downloading artifacts from coordinator... ok"
	unzip -o -q "$zip"
	rm -f "$zip"
	;;
*)
	die "unknown command ${command:-(none)}"
	;;
esac
