#!/usr/bin/env python3
"""Writes cases.toml: planted secrets of every rule format in realistic contexts, and hard
negatives that must not be redacted. Deterministic (fixed seed). Run from this directory."""
import base64, json, random, string

rng = random.Random(1337)
A = string.ascii_letters + string.digits
def r(n, alphabet=A): return "".join(rng.choice(alphabet) for _ in range(n))
def hexs(n): return r(n, "0123456789abcdef")
UP = string.ascii_uppercase

cases = []
def case(name, text, secrets, rule, keep=()):
    cases.append({"name": name, "text": text, "secrets": list(secrets), "rule": rule, "keep": list(keep)})

ghp = "ghp_" + r(36)
case("github pat in .env", f"GITHUB_TOKEN={ghp}\nDEBUG=1\n", [ghp], "github-pat", ["GITHUB_TOKEN=", "DEBUG=1"])
case("github pat repeated without context", f"token {ghp} ok\nlater: {ghp}", [ghp], "github-pat")
gho = "gho_" + r(36); case("github oauth in json", json.dumps({"access_token": gho}), [gho], "github-oauth")
ghs = "ghs_" + r(36); case("github app token in log", f"2026-11-23T04:00:01Z INFO using {ghs} for api", [ghs], "github-app-token")
fg = "github_pat_" + r(22) + "_" + r(59); case("github fine-grained", f"export GH_PAT={fg}", [fg], "github-fine-grained-pat")
gl = "glpat-" + r(20, A + "-_"); case("gitlab pat", f"curl --header 'PRIVATE-TOKEN: {gl}' https://gitlab.example.com/api", [gl], "gitlab-token")
xb = "xoxb-" + r(11, string.digits) + "-" + r(13, string.digits) + "-" + r(24); case("slack bot token", f"SLACK_BOT_TOKEN={xb}", [xb], "slack-token")
hook = "https://hooks.slack.com/services/T" + r(8, UP + string.digits) + "/B" + r(8, UP + string.digits) + "/" + r(24)
case("slack webhook", f"webhook_url: {hook}\n", [hook], "slack-webhook")
sk = "sk_live_" + r(24); case("stripe secret", f"stripe.api_key = \"{sk}\"", [sk], "stripe-secret-key")
rk = "rk_test_" + r(24); case("stripe restricted", f"Restricted key {rk}", [rk], "stripe-secret-key")
oa = "sk-proj-" + r(48, A + "-_"); case("openai project key", f"OPENAI_API_KEY={oa}", [oa], "openai-api-key")
ol = "sk-" + r(20) + "T3BlbkFJ" + r(20); case("openai legacy key", f"openai.api_key = '{ol}'", [ol], "openai-api-key-legacy")
an = "sk-ant-api03-" + r(93, A + "-_") + "AA"; case("anthropic key", f"ANTHROPIC_API_KEY=\"{an}\"", [an], "anthropic-api-key")
gk = "AIza" + r(35, A + "-_"); case("google api key in url", f"https://maps.googleapis.com/maps/api/geocode/json?key={gk}&address=x", [gk], "google-api-key")
az = r(86, A + "+/") + "=="; case("azure storage connection string", f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={az};EndpointSuffix=core.windows.net", [az], "azure-storage-key", ["AccountName=acct"])
sg = "SG." + r(22, A + "-_") + "." + r(43, A + "-_"); case("sendgrid", f"sendgrid_key: {sg}", [sg], "sendgrid-api-key")
tw = "SK" + hexs(32); case("twilio api key", f"TWILIO_API_KEY={tw}", [tw], "twilio-api-key")
twt = hexs(32); case("twilio auth token", f"TWILIO_AUTH_TOKEN={twt}", [twt], "twilio-auth-token")
mg = "key-" + hexs(32); case("mailgun", f"api: {mg}", [mg], "mailgun-api-key")
npm = "npm_" + r(36); case("npmrc", f"//registry.npmjs.org/:_authToken={npm}\n", [npm], "npm-token")
pypi = "pypi-AgEIcHlwaS5vcmc" + r(70, A + "-_"); case("pypirc", f"[pypi]\nusername = __token__\npassword = {pypi}\n", [pypi], "pypi-token")
hf = "hf_" + r(34, string.ascii_letters); case("hugging face", f"HF_TOKEN={hf}", [hf], "huggingface-token")
tg = r(10, string.digits) + ":AA" + r(33, A + "-_"); case("telegram bot", f"bot = telebot.TeleBot(\"{tg}\")", [tg], "telegram-bot-token")
dd = hexs(32); case("datadog", f"DD_API_KEY={dd}", [dd], "datadog-api-key")
def b64u(d): return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")
jwt = b64u({"alg": "HS256", "typ": "JWT"}) + "." + b64u({"sub": "1234567890", "name": "Jo", "iat": 1516239022}) + "." + r(43, A + "-_")
case("jwt in header", f"Authorization: Bearer {jwt}", [jwt], "jwt")
body = "\n".join(r(64, A + "+/") for _ in range(6))
pem = f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"
case("pem private key", f"cat id_rsa\n{pem}\n$ ", [pem] + body.split("\n"), "private-key", ["cat id_rsa"])
case("json-escaped pem in service account", json.dumps({"type": "service_account", "private_key": pem + "\n"}), [line for line in body.split("\n")], "private-key")
trunc = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(r(64, A + "+/") for _ in range(3))
case("truncated pem", trunc, trunc.split("\n")[1:], "private-key")
pw = r(14, A + "!#%&*")
case("postgres url", f"DATABASE_URL=postgres://app:{pw}@db.internal:5432/app", [pw], "url-credentials", ["postgres://app:", "@db.internal"])
basic = base64.b64encode(f"admin:{pw}".encode()).decode()
case("http basic auth", f"GET / HTTP/1.1\nAuthorization: Basic {basic}\n", [basic], "http-basic-auth", ["Authorization: Basic "])
bearer = r(40, A + "._-")
case("bearer token", f"-H 'Authorization: Bearer {bearer}'", [bearer], "http-bearer-token")
sym = "p@$$w0rd!" + r(6, A + "!#$%^&*")
case("symbol password assignment", f"db_password = \"{sym}\"\n", [sym], "password-assignment", ["db_password = "])
low = "hunter" + r(4, string.ascii_lowercase) + "7"
case("low-entropy password in yaml", f"redis:\n  password: {low}\n", [low], "password-assignment")
aws_id = "AKIA" + r(16, UP + "234567"); aws_sk = r(40, A + "/+")
case("aws credentials file", f"[default]\naws_access_key_id = {aws_id}\naws_secret_access_key = {aws_sk}\n", [aws_id, aws_sk], "aws-access-key-id")
ent = r(40)
case("unnamed secret assignment", f"client_secret: {ent}\n", [ent], "secret-assignment")

negatives = [
    ("git sha in log", "commit 9fceb02d0ae598e95dc970b74767f19372d61af8\nAuthor: A <a@b.c>\n"),
    ("git log oneline", "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678 fix: token refresh"),
    ("uuid", "request_id=123e4567-e89b-12d3-a456-426614174000 session ok"),
    ("npm integrity", '"integrity": "sha512-' + r(86, A + "+/") + '=="'),
    ("docker digest", "image: nginx@sha256:" + hexs(64)),
    ("go.sum", "golang.org/x/net v0.17.0 h1:" + r(43, A + "+/") + "="),
    ("ssh public key", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + r(43, A + "+/") + " user@host"),
    ("aws documented example", "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("stripe publishable key", "pk_live_" + r(24)),
    ("base64 image", "<img src=\"data:image/png;base64," + r(200, A + "+/") + "\">"),
    ("python code with password param", "def login(user, password):\n    return check(user, password=password)\n"),
    ("password from env", "password = os.environ['DB_PASSWORD']\n"),
    ("placeholder in docs", "export OPENAI_API_KEY=<your-key-here>\nAPI_KEY=${API_KEY}\n"),
    ("prose about tokens", "The token bucket algorithm refills tokens at a fixed rate; each key maps to a bucket."),
    ("secret ref", "curl -H 'Authorization: Bearer SECRET_REF(github)' https://api.github.com"),
    ("url without password", "https://user@example.com/path and git@github.com:org/repo.git"),
    ("long identifier", "api_key_rotation_interval_seconds = 3600"),
    ("basic in prose", "This is basic knowledge about authentication."),
    ("lockfile sha256", "checksum = \"" + hexs(64) + "\""),
    ("password field list", 'fields = ["username", "password", "email"]\nrequired: ["password", "confirm"]'),
    ("password settings", "PasswordAuthentication no\npassword_min_length = 12\nPASSWORD_RESET_TIMEOUT=259200\npassword_file: /run/secrets/db\n"),
    ("password in prose", "Enter your password:\n  The password is stored in the vault; the secret is rotated weekly."),
    ("shell env dump", "PWD=/home/agent/project\nOLDPWD=/tmp\ncwd = os.getcwd()\n"),
    ("kubernetes secret refs", "kind: Secret\nsecretName: prod-db-credentials\nsecretKeyRef:\n  name: db\n  key: password\n"),
    ("password from variables", "user.password = hashed_pw\nconn.password = newPassword\npassword: ${{ secrets.DB_PASSWORD }}\n"),
    ("our own placeholders", "password=[REDACTED:password-assignment:0123456789] secret_key: [REDACTED:secret-assignment:abcdef0123]"),
    ("stripe publishable key by name", "STRIPE_PUBLISHABLE_KEY=pk_live_" + r(90)),
    ("service account key id", '"private_key_id": "' + hexs(40) + '",'),
    ("documented examples", "sk_test_4eC39HqLyjWDarjtT1zdp7dc and ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
]

ent2 = r(40)
case("unnamed high-entropy token", f"session_token: {ent2}\n", [ent2], "high-entropy-token")

# Command-line password flags, the `Authorization: token` scheme and a few more token formats
# (their own generator, so the cases above keep their values).
rng2 = random.Random(2026)
def r2(n, alphabet=A): return "".join(rng2.choice(alphabet) for _ in range(n))
PW = A + "!#%*@^"
def pw2(): return r2(3, string.ascii_letters) + r2(9, PW)
p = pw2(); case("mysql attached password", f"$ mysql -h db.internal -u root -p{p} app < schema.sql", [p], "cli-password", ["mysql -h db.internal -u root -p", " app < schema.sql"])
p = pw2(); case("mysqldump in cron", f"0 3 * * * mysqldump -uroot -p'{p}' --all-databases | gzip > /backup/all.sql.gz", [p], "cli-password", ["--all-databases"])
p = pw2(); case("docker login -p", f"docker login -u ci -p {p} registry.gitlab.com", [p], "cli-password", ["registry.gitlab.com"])
p = pw2(); case("sshpass", f"sshpass -p '{p}' ssh -o StrictHostKeyChecking=no deploy@10.0.0.7 'systemctl restart app'", [p], "cli-password", ["deploy@10.0.0.7"])
p = pw2(); case("redis-cli -a", f"redis-cli -h cache.internal -p 6379 -a {p} INFO keyspace", [p], "cli-password", ["-p 6379", "INFO keyspace"])
p = pw2(); case("sqlcmd -P", f"sqlcmd -S tcp:sql01,1433 -U sa -P \"{p}\" -Q \"SELECT 1\"", [p], "cli-password", ["SELECT 1"])
p = pw2(); case("ldapsearch -w", f"ldapsearch -x -H ldap://ldap.internal -D \"cn=admin,dc=example,dc=org\" -w {p} -b \"dc=example,dc=org\"", [p], "cli-password", ["cn=admin"])
p = pw2(); case("mongosh -p", f"mongosh --host mongo.internal -u admin -p {p} --authenticationDatabase admin", [p], "cli-password", ["--authenticationDatabase admin"])
p = pw2(); case("smbclient user%password", f"smbclient //fs01/share -U backup%{p} -c 'ls'", [p], "cli-password", ["//fs01/share"])
p = pw2(); case("htpasswd batch", f"htpasswd -bc /etc/nginx/.htpasswd admin {p}", [p], "cli-password", ["/etc/nginx/.htpasswd admin"])
p = pw2(); p2 = pw2(); case("keytool store passwords", f"keytool -importkeystore -srckeystore app.p12 -srcstoretype PKCS12 -srcstorepass {p} -destkeystore app.jks -deststorepass {p2}", [p, p2], "cli-password", ["-destkeystore app.jks"])
p = pw2(); case("openssl passin", f"openssl rsa -in key.pem -passin pass:{p} -out key.dec.pem", [p], "cli-password", ["-out key.dec.pem"])
p = pw2(); case("named password flag", f"./deploy.sh --env prod --db-password {p} --yes", [p], "cli-password", ["--env prod", "--yes"])
t = r2(40, "0123456789abcdef"); case("authorization token scheme", f"curl -H \"Authorization: token {t}\" https://api.github.com/user", [t], "http-bearer-token", ["https://api.github.com/user"])
t = "ya29.a0" + r2(60, A + "-_"); case("google oauth access token", f"access_token={t}&token_type=Bearer", [t], "google-oauth-token")
t = "hf_" + r2(34); case("hugging face token with digits", f"login with {t} first", [t], "huggingface-token")
# Text as it is written in a JSON file or tool result: a line break before the secret is the
# two bytes `\n`, and it must survive (the output stays valid JSON).
t = "ghp_" + r2(36); case("github pat after an escaped line break", json.dumps({"content": f"my token is:\n{t}\nthanks"}), [t], "github-pat", ["is:\\n", "\\nthanks"])
t = r2(40); case("entropy value after an escaped line break", json.dumps({"log": f"session_token:\n{t}"}), [t], "high-entropy-token", ["session_token:\\n"])
p = pw2(); case("cli password in a JSON tool call", json.dumps({"command": f"ls\nmysql -uroot -p{p} app"}), [p], "cli-password", ["ls\\nmysql -uroot -p"])
p = pw2(); case("short pass key in .env", f"DB_HOST=db\nDB_PASS={p}\nDB_PORT=5432\n", [p], "password-assignment", ["DB_PORT=5432"])
p = pw2(); case("pass key in python", f"smtp_pass = \"{p}\"\n", [p], "password-assignment", ["smtp_pass = "])
p = pw2(); case("camelCase pass key in JSON", json.dumps({"user": "app", "dbPass": p}), [p], "password-assignment", ["dbPass"])
p = pw2(); case("pass key of a kubernetes env entry", f"env:\n  - name: SMTP_PASS\n    value: \"{p}\"\n", [p], "password-assignment", ["SMTP_PASS"])
p = pw2(); case("netrc on one line", f"machine api.heroku.com login dev@example.com password {p}\n", [p], "password-assignment", ["login dev@example.com password "])
p = pw2(); case("netrc on several lines", f"machine git.example.com\n  login ci\n  password {p}\n", [p], "password-assignment", ["login ci"])
t = r2(43, A + "+/") + "%3D"; case("azure sas url", f"https://acct.blob.core.windows.net/c/f.txt?sv=2022-11-02&ss=b&sp=r&se=2026-12-01T00:00:00Z&sig={t}", [t], "azure-sas-token", ["sv=2022-11-02"])
t = "whsec_" + r2(32); case("stripe webhook secret", f"STRIPE_WEBHOOK_SECRET={t}", [t], "stripe-secret-key")
t = "AKIA" + r2(16, UP + string.digits); case("aws key id with any digit", f"aws_access_key_id={t}", [t], "aws-access-key-id")
t = "pypi-AgENdGVzdC5weXBpLm9yZw" + r2(70, A + "-_"); case("test.pypi.org token", f"[testpypi]\nusername = __token__\npassword = {t}\n", [t], "pypi-token")
t = "GR1348941" + r2(20, A + "-_"); case("gitlab runner registration token", f"gitlab-runner register --registration-token {t}", [t], "gitlab-token")
t = "glagent-" + r2(50, A + "-_"); case("gitlab agent token", f"agent_token: {t}", [t], "gitlab-token")
ppk = [r2(64, A + "+/") for _ in range(2)] + [r2(20, A + "+/") + "="]
case("putty key file", "PuTTY-User-Key-File-3: ssh-rsa\nEncryption: none\nComment: deploy\nPublic-Lines: 1\nAAAAB3NzaC1yc2EAAAADAQABAAAAgQ\nPrivate-Lines: 3\n" + "\n".join(ppk) + "\nPrivate-MAC: " + r2(64, "0123456789abcdef") + "\n", ppk, "private-key", ["Private-Lines: 3\n", "\nPrivate-MAC: "])
t = "%08x-%04x-%04x-%04x-%012x" % (rng2.getrandbits(32), rng2.getrandbits(16), rng2.getrandbits(16), rng2.getrandbits(16), rng2.getrandbits(48))
case("heroku api key", f"HEROKU_API_KEY={t}\n", [t], "heroku-api-key", ["HEROKU_API_KEY="])
# Secrets without an `=` or `:`: tables, XML elements, long flags (a third stream, so the
# cases above keep their values).
rng3 = random.Random(3003)
def r3(n, alphabet=A): return "".join(rng3.choice(alphabet) for _ in range(n))
def pw3(): return r3(4) + rng3.choice("!#%-_") + r3(7)
p1, p2 = pw3(), pw3()
case("password column of a markdown table", f"Here are the logins:\n\n| Service | User | Password |\n|---|---|---|\n| Postgres | admin | {p1} |\n| Redis | default | `{p2}` |\n| Grafana | viewer | ******** |\n", [p1, p2], "password-assignment", ["| Postgres | admin | ", "| Grafana | viewer | ******** |"])
p1 = pw3(); case("password column of a mysql result", f"+----+-------+----------------+\n| id | user  | password       |\n+----+-------+----------------+\n|  1 | alice | {p1} |\n|  2 | bob   | NULL           |\n+----+-------+----------------+\n", [p1], "password-assignment", ["|  1 | alice | ", "NULL"])
p1 = pw3(); case("password key in a table of variables", f"| Variable | Value | Notes |\n|---|---|---|\n| DB_PASSWORD | {p1} | rotated monthly |\n| PASSWORD_MIN_LENGTH | 12 | policy |\n", [p1], "password-assignment", ["rotated monthly", "| PASSWORD_MIN_LENGTH | 12 | policy |"])
t = r3(32); case("secret key in a table of variables", f"| Variable | Value | Notes |\n|---|---|---|\n| CLIENT_SECRET | {t} | OAuth app |\n| SECRET_NAME | prod-db-credentials | name |\n", [t], "secret-assignment", ["OAuth app", "prod-db-credentials"])
p1 = pw3(); case("a table as written in a JSON tool result", json.dumps({"content": f"| host | password |\n|---|---|\n| db01 | {p1} |\n"}), [p1], "password-assignment", ["| db01 | "])
t = r3(40, A + "/+"); case("secret key in an xml element", f"<Credentials>\n  <AccessKeyId>AKIA{r3(16, UP + '234567')}</AccessKeyId>\n  <SecretAccessKey>{t}</SecretAccessKey>\n</Credentials>", [t], "aws-secret-access-key", ["<SecretAccessKey>", "</SecretAccessKey>"])
t = r3(32); case("client secret in an xml element", f"<oauth>\n  <clientId>app-7</clientId>\n  <clientSecret>{t}</clientSecret>\n</oauth>", [t], "high-entropy-token", ["<clientId>app-7</clientId>", "</clientSecret>"])
t = r3(86, A + "+/") + "=="; case("secret key in a table row", f"| AccountKey | {t} |", [t], "high-entropy-token", ["| AccountKey | "])
t = r3(40); case("secret after a long flag", f"vault write auth/approle/login --client-secret {t} --format json", [t], "high-entropy-token", ["--format json"])
p1 = pw3(); case("password flag after a sentence", f"Run the migration. --db-password {p1}", [p1], "cli-password", ["Run the migration. "])
p1 = pw3(); case("sql create user identified by", f"mysql> CREATE USER 'app'@'%' IDENTIFIED BY '{p1}';\nQuery OK, 0 rows affected", [p1], "password-assignment", ["Query OK"])
p1 = pw3(); case("sql alter role with password", f"ALTER ROLE app WITH LOGIN PASSWORD '{p1}' VALID UNTIL 'infinity';", [p1], "password-assignment", ["VALID UNTIL 'infinity'"])
p1 = pw3(); case("sql identified with a plugin", f"ALTER USER 'root'@'localhost' IDENTIFIED WITH mysql_native_password BY '{p1}';", [p1], "password-assignment")
p1 = pw3(); case("sql server login", f"CREATE LOGIN app_user WITH PASSWORD = '{p1}', CHECK_POLICY = OFF;", [p1], "password-assignment", ["CHECK_POLICY = OFF"])
p1 = pw3(); case("password piped into docker login", f"echo \"{p1}\" | docker login ghcr.io -u ci --password-stdin", [p1], "cli-password", ["docker login ghcr.io -u ci --password-stdin"])
p1 = pw3(); case("yaml block scalar password", f"db:\n  user: app\n  password: >-\n    {p1}\n  port: 5432\n", [p1], "password-assignment", ["port: 5432"])
t = r3(40); case("yaml block scalar token", f"auth:\n  access_token: |\n    {t}\n", [t], "high-entropy-token", ["access_token: |"])
p1 = r3(5) + "_" + r3(6) + "9"; case("java properties password", f"spring.datasource.url=jdbc:postgresql://db:5432/app\nspring.datasource.password={p1}\n", [p1], "password-assignment", ["jdbc:postgresql://db:5432/app"])
t = "-" + r3(30, A + "-_") + "_-"; case("base64url token with dashes at its ends", f"SESSION_SECRET={t}\n", [t], "secret-assignment", ["SESSION_SECRET="])
p1 = pw3(); case("password in a sentence naming its account", f"The admin password for the staging box is `{p1}`, please rotate it.", [p1], "password-assignment", ["please rotate it"])
p1 = pw3(); case("use password in a sentence", f"Log in as deploy and use password {p1} for now.", [p1], "password-assignment", ["for now."])
p1 = pw3(); case("password is with a colon", f"the password is: {p1}\n", [p1], "password-assignment")
p1 = r3(6, string.ascii_letters) + "<" + r3(3, string.digits) + r3(3); case("password with a < after its letters", f"DB_PASSWORD={p1}\n", [p1], "password-assignment")
negatives += [
    ("tables about passwords", "| Option | Type | Description |\n|---|---|---|\n| `password` | `string` | The password to connect with |\n| `passwordFile` | `path` | A file holding the password |\n| PASSWORD_MIN_LENGTH | 12 | Minimum length |\n| SECRET_NAME | prod-db-credentials | The secret's name |\n\n| Password | Notes |\n|---|---|\n\n| Model | Tokens |\n|---|---|\n| claude-sonnet-4-5 | 120345 |\n"),
    ("rust types and expressions after secret keys", "    secret: Option<&'key [u8]>,\n    pub fn hash_password_into(&self, pwd: &[u8], salt: &[u8]) -> Result<()> {\npub const VALID_PASSWORD_HASHES: &[&str] = &[\n            secret_key: *secret_key,\n        let expanded: ExpandedSecretKey = (&self.secret_key).into();\n    fn source(&self) -> Option<&(dyn Error + 'static)> {\n"),
    ("typescript schemas and optional chains", "export declare const ClientSecret$inboundSchema: z.ZodType<ClientSecret, unknown>;\nconst workSecret = opts?.workSecret || null;\nconst password = security?.basic.password;\n"),
    ("messages about passwords", "Error::PwdTooLong => \"password is too long\",\nconst password = 'Password used to generate key';\n"),
    ("gpg key fingerprints after flags", "gpg --batch --keyserver hkps://keys.openpgp.org --recv-keys 5C3C5F3E314C866292F359A8F3AD5C94A67F707E\n"),
    ("sql and login commands with references", "CREATE USER app IDENTIFIED BY '$DB_PW';\nALTER ROLE app WITH PASSWORD NULL;\nALTER USER app PASSWORD :'pw';\necho \"$CI_TOKEN\" | docker login -u ci --password-stdin\ncat token.txt | docker login -u ci --password-stdin\n"),
    ("sentences about passwords", "The password is incorrect, try again.\nthe password for this account is stored in the vault.\nuse password authentication\nthe password of the user is hashed.\nEnter the password shown on screen.\n"),
    ("attributes set from variables", "self.password = new_password1\nthis.password = userPassword;\nuser.passwd = pw\n"),
    ("arrows, pipes and redirections", "let token_reader = |secret_token| secret_token.Zx9kQ2mP7vR4tY8wL1nB6cH3jF5sD0aG;\necho $X > api_key_Zx9kQ2mP7vR4tY8wL1nB6cH3jF5sD0aG.txt\nsecret_fn -> Zx9kQ2mP7vR4tY8wL1nB6cH3jF5sD0aG\n"),
]
negatives += [
    ("mysql prompting for its password", "mysql -u root -p appdb\nEnter password:\nmysql -h db -P 3306 -u app -p\n"),
    ("find predicates after mysql", "find /var/lib/mysql -name '*.ibd' -print\nfind /srv/mysql -prune -o -perm 600\n"),
    ("port flags", "docker run --name mysql -p 8080:80 -p 443:443 nginx\ndocker run --name mysql -p3306:3306 mysql:8\nredis-cli -h cache -p 6380 ping\nsshpass -e ssh -p 2222 deploy@host\n"),
    ("passwords from elsewhere", "docker login -u ci --password-stdin < token.txt\ndocker login -u ci -p $CI_REGISTRY_PASSWORD $CI_REGISTRY\nsqlcmd -S sql01 -U sa -P \"$SA_PASSWORD\"\nkeytool -list -keystore app.jks -storepass:env STORE_PASS\nopenssl rsa -in key.pem -passin env:KEY_PASS -out plain.pem\nsshpass -f ~/.pw ssh host\n"),
    ("keys that end in pass but hold none", "bypass = something\ncompass: north\nfirst_pass = True\nlet second_pass = first_pass;\nskip_pass: false\nByPass: enabled\nrenderPass = encoder.beginRenderPass(desc)\n"),
    ("netrc without a password", "machine github.com\n  login ci\n"),
    ("elided values in documentation", "Passwords on command lines (`mysql -p…`, `smbclient -U user%…`, `sshpass -p ...`) are caught."),
    ("rust and c declarations", "pub const DEVCONF_STABLE_SECRET: _bindgen_ty_3 = _bindgen_ty_3::DEVCONF_STABLE_SECRET;\npub struct passwd {\n    pub pw_name: *mut c_char,\n    pub pw_passwd: *mut c_char,\n}\npub passwd: CString,\npassword: SafeString,\nconst NSS_BUFLEN_PASSWD: usize = 1024;\n    DEVSTAT_MATCH_PASS = 0x04,\nlog_passwd: __u32,\npub type HttpPasswordCB = Option<\nlet pwd = unsafe { pwd.assume_init() };\n"),
    ("a pem header in documentation", "/// Keys start with the following delimiter:\n///\n/// ```text\n/// -----BEGIN PRIVATE KEY-----\n/// ```\n"),
    ("format fields, arrow functions, public keys and fingerprints", "return f\"Source(secrets_dir={self.secrets_dir!r})\"\nERR_INVALID_PASSWORD:()=>kt,\nconst pubkey256 = 'SIXvRyDmBJSgatgTQRGbInBaAK+hZOQ18UmrSwnDlK8=';\n  - Release GPG key: F3EF5F62A87FC27A22E643F714CE4FF5015AA242\nprovided via the --username and --password options\n"),
    ("tracing fields", "tracing::warn!(secret = %job.name, \"Capture failed.\");\ntracing::error!(password = ?err, \"x\");\n"),
    ("masked and tagged values", "Password: \u2022\u2022\u2022\u2022\u2022\u2022\u2022\u2022\nsecret: !!binary |\n  c2VjcmV0\napi_key: ************\n"),
    ("uuid under a key that is not heroku's", "request_id = 123e4567-e89b-12d3-a456-426614174000\nheroku_app_id: 01234567-89ab-cdef-0123-456789abcdef\n"),
    ("password prompts and switches", "ldapsearch -x -W -D cn=admin -b dc=example,dc=org\nmongosh -u admin -p --authenticationDatabase admin\npg_dump --no-password appdb > dump.sql\n./manage.py --reset-password alice\n"),
]

# Names set by commands, call arguments, XML attributes and prose (seed 4004, so the values above
# stay as they were).
rng4 = random.Random(4004)
def r4(n, alphabet=A): return "".join(rng4.choice(alphabet) for _ in range(n))
def pw4(): return r4(4) + rng4.choice("!#%-_") + r4(7)
def hex4(n): return r4(n, "0123456789abcdef")
t = hex4(32); case("token set with setx", f"C:\\> setx SENTRY_AUTH_TOKEN \"{t}\"\nSUCCESS: Specified value was saved.", [t], "secret-assignment", ["SUCCESS: Specified value was saved."])
p1 = pw4(); case("password in a dockerfile env instruction", f"FROM postgres:16\nENV POSTGRES_USER app\nENV POSTGRES_PASSWORD {p1}\nEXPOSE 5432\n", [p1], "password-assignment", ["ENV POSTGRES_USER app", "EXPOSE 5432"])
t = r4(40, A + "/+"); case("aws secret set with aws configure", f"$ aws configure set aws_access_key_id AKIA{r4(16, UP + '234567')}\n$ aws configure set aws_secret_access_key {t}\n$ aws configure set region eu-west-1\n", [t], "aws-secret-access-key", ["aws configure set region eu-west-1"])
t = r4(43, A + "-_"); case("secret set with the github cli", f"gh secret set SESSION_SECRET --body \"{t}\" --repo acme/app", [t], "secret-assignment", ["--repo acme/app"])
t = "gho_" + r4(36); case("token piped into gh auth login", f"echo {t} | gh auth login --with-token", [t], "github-oauth", ["gh auth login --with-token"])
t = r4(36); case("token piped into gh auth login without a prefix", f"echo \"{t}\" | gh auth login --with-token", [t], "cli-password", ["gh auth login --with-token"])
t = r4(43, A + "-_"); case("token in a call's arguments", f'func init() {{\n\tos.Setenv("ACCESS_TOKEN", "{t}")\n}}', [t], "secret-assignment", ['os.Setenv("ACCESS_TOKEN", "'])
t = r4(40); case("token in a setter call as written in a json tool result", json.dumps({"content": f'os.Setenv("GITHUB_APP_TOKEN", "{t}")\n'}), [t], "secret-assignment", ['os.Setenv(\\"GITHUB_APP_TOKEN\\"'])
t = hex4(32); case("api key in a php define", f"define('STRIPE_WEBHOOK_API_KEY', '{t}');", [t], "secret-assignment", ["define('STRIPE_WEBHOOK_API_KEY', '"])
t = r4(32); case("api key in an xml add element", f'<appSettings>\n  <add key="Environment" value="Production" />\n  <add key="ApiKey" value="{t}" />\n</appSettings>', [t], "high-entropy-token", ['<add key="Environment" value="Production" />'])
p1 = pw4(); case("password in xml property attributes", f'<property name="mail.smtp.user" value="alerts"/>\n<property name="mail.smtp.password" value="{p1}"/>', [p1], "password-assignment", ['<property name="mail.smtp.user" value="alerts"/>'])
t = r4(43, A + "-_"); case("access token in a sentence", f"The access token is {t}. It expires in an hour.", [t], "secret-assignment", ["It expires in an hour."])
t = r4(40, A + "/+"); case("aws secret key in a sentence", f"and the secret access key is {t} (rotate it after the demo)", [t], "secret-assignment", ["(rotate it after the demo)"])
p1 = pw4(); case("password given to net user", f"C:\\> net user deploy {p1} /add\nThe command completed successfully.", [p1], "cli-password", ["The command completed successfully."])
p1 = pw4(); case("password piped into chpasswd", f"echo \"deploy:{p1}\" | sudo chpasswd", [p1], "cli-password", ["| sudo chpasswd"])
p1 = pw4(); case("powershell secure string from plain text", f"$pw = ConvertTo-SecureString \"{p1}\" -AsPlainText -Force", [p1], "cli-password", ["-AsPlainText -Force"])
p1 = pw4(); case("terraform variable default", f'variable "db_password" {{\n  type      = string\n  default   = "{p1}"\n  sensitive = true\n}}', [p1], "password-assignment", ["sensitive = true"])
t = r4(36); case("registry token set with npm config", f"npm config set //registry.example.com/:_authToken {t}", [t], "secret-assignment", ["npm config set //registry.example.com/:_authToken "])
p1 = pw4(); case("bare pass key", f"mount -t cifs //nas/share /mnt -o user=backup,pass={p1},vers=3.0", [p1], "password-assignment", [",vers=3.0"])
p1 = pw4(); case("bare pass key in a js object", f'const creds = {{ user: "admin", pass: "{p1}" }};', [p1], "password-assignment", ['user: "admin"'])
p1 = pw4(); case("bare pw key", f"pw={p1} ./restore.sh prod", [p1], "password-assignment", ["./restore.sh prod"])
negatives += [
    ("pass and pw as words and counts", "pass=2\npass: true\nif ok: pass\ntests: pass: 12 fail: 0\nobj.pass = user.pass\npw = getpass()\npw: ${PW}\nlet pw = read_password()?;\n# The content pass: everything above moved only shas.\n"),
    ("account commands without a password", "net user deploy /add\nnet user deploy * /add\nnet user deploy /delete\nnet user \"Deploy User\" /active:no\necho \"deploy:$PW\" | chpasswd\necho \"$USER:$PASS\" | sudo chpasswd\n$secure = ConvertTo-SecureString $plain -AsPlainText -Force\nnpm config set registry https://registry.npmjs.org/\nnpm config set //registry.npmjs.org/:_authToken ${NPM_TOKEN}\n"),
    ("terraform variables about secrets", 'variable "db_password" {\n  type      = string\n  sensitive = true\n}\nvariable "secret_name" {\n  default = "prod/db-credentials"\n}\nvariable "secret_arn" {\n  default = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod"\n}\nvariable "password_length" {\n  default = "16"\n}\n'),
    ("windows references and secret files", "setx DB_PASSWORD %DBPW%\nset PGPASSWORD=%DB_PASSWORD%\nENV DB_PASSWORD_FILE /run/secrets/db_password\nENV POSTGRES_PASSWORD_FILE=/run/secrets/pg\n"),
    ("names set from elsewhere", "setx PATH \"%PATH%;C:\\tools\\bin\"\nsetx API_TOKEN %TOKEN%\nENV NODE_ENV production\nENV API_KEY_FILE /run/secrets/api_key\nENV SECRET_KEY_BASE=\nENV DB_PASSWORD ${DB_PASSWORD}\naws configure set region eu-west-1\naws configure set aws_secret_access_key $AWS_SECRET_ACCESS_KEY\ngh secret set API_KEY < key.txt\ngh secret set DB_PASSWORD --body \"$DB_PASSWORD\"\ncat token.txt | gh auth login --with-token\n"),
    ("calls and attributes that name secrets without holding one", "os.Setenv(\"API_TOKEN\", token)\nSystem.setProperty(\"api.key\", System.getenv(\"API_KEY\"));\nlist = [\"api_key\", \"ThisIsALongCamelCaseIdentifierToo\"]\nlog(\"token\", \"refreshTokenExpiredException\")\nassert_eq!(\"secret\", \"x\");\n<add key=\"ApiKey\" value=\"\" />\n<property name=\"password\" value=\"${db.password}\"/>\n<add key=\"TokenLifetime\" value=\"3600\" />\n<property name=\"publicKey\" value=\"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9x2kQ7mP\"/>\n"),
    ("sentences about tokens and keys", "The access token is expired, so the client refreshes it.\nThe API key is stored in the vault.\nThe public key is AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\nthe session key was rotated yesterday\nThe cache key is 3f2a9c0d1e4b5a6f7081920a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e\n"),
]

# Session 11: .pgpass lines, users and passwords given together, tab-separated rows, URLs whose
# password holds an unencoded `/`, values printed after the command that read them, Google OAuth
# client secrets and refresh tokens, AWS session tokens, Discord webhooks, GitLab tokens with a
# checksum, Redis requirepass.
rng5 = random.Random(5005)
def r5(n, alphabet=A): return "".join(rng5.choice(alphabet) for _ in range(n))
def pw5(): return r5(4) + rng5.choice("!#%-_") + r5(7)
p1 = pw5(); case("pgpass line", f"$ cat ~/.pgpass\ndb.internal:5432:app:deploy:{p1}\n*:*:*:postgres:{p1}x\n", [p1, p1 + "x"], "password-assignment", ["db.internal:5432:app:deploy:"])
p1 = "Zc7A" + pw5(); case("credentials given as user and password", f"The staging credentials: admin:{p1} (rotate after the demo)", [p1], "password-assignment", ["(rotate after the demo)"])
p1 = "Tq2" + pw5(); case("login given as user slash password", f"login admin / {p1}\nthen open the dashboard", [p1], "password-assignment", ["then open the dashboard"])
p1 = pw5(); t = r5(40, A + "+/"); case("tab-separated secrets", f"NAME\tVALUE\nDB_PASSWORD\t{p1}\nAWS_SECRET_ACCESS_KEY\t{t}\nREGION\teu-west-1\n", [p1, t], "password-assignment", ["REGION\teu-west-1"])
t = r5(24, A) + "/" + r5(15, A); case("url password holding a slash", f'DATABASE_URL="mysql://root:{t}@127.0.0.1:3306/app"', [t], "url-credentials", ["@127.0.0.1:3306/app"])
t = r5(40); case("token printed by a ruby repl", f'irb> ENV["SECRET_KEY_BASE"]\n=> "{t}"\nirb> exit', [t], "secret-assignment", ["irb> exit"])
t = r5(40); case("token printed by cat", f"$ cat ~/.secrets/token\n{t}\n$ ls", [t], "secret-assignment", ["$ ls"])
p1 = pw5(); case("password printed by echo", f"$ echo $DB_PASSWORD\n{p1}\n$ psql -h db", [p1], "password-assignment", ["$ psql -h db"])
t = "GOCSPX-" + r5(28, A + "-_"); case("google oauth client secret", f'{{"web": {{"client_id": "1234-abc.apps.googleusercontent.com", "client_secret": "{t}"}}}}', [t], "google-oauth-client-secret", ["apps.googleusercontent.com"])
t = "1//0" + r5(100, A + "-_"); case("google oauth refresh token", f"Refresh token: {t}\nAccess token expires in 3599 seconds", [t], "google-oauth-token", ["Access token expires in 3599 seconds"])
t = "IQoJb3JpZ2luX2Vj" + r5(400, A + "+/") + "="; case("aws session token", f"$ aws sts get-session-token\n{{\"Credentials\": {{\"SessionToken\": \"{t}\", \"Expiration\": \"2026-11-24T12:00:00Z\"}}}}", [t], "aws-session-token", ["Expiration"])
t = f"https://discord.com/api/webhooks/{rng5.randint(10**17, 10**18)}/" + r5(68, A + "-_"); case("discord webhook", f"curl -X POST -H 'Content-Type: application/json' -d '{{\"content\": \"deploy done\"}}' {t}", [t], "discord-webhook", ["deploy done"])
t = "glpat-" + r5(36, A + "-_") + ".01." + r5(9, A); case("gitlab token with a version and checksum", f"Your new token: {t} (expires 2027-01-01)", [t], "gitlab-token", ["(expires 2027-01-01)"])
p1 = pw5(); case("redis requirepass", f"# redis.conf\nbind 127.0.0.1\nrequirepass {p1}\nmaxmemory 256mb", [p1], "password-assignment", ["maxmemory 256mb"])
negatives += [
    ("colon lines, logins and tabs that hold no password", "localhost:5432:*:*:${PGPASSWORD}\nlisten 0.0.0.0:5432:tcp\ncredentials: aws:us-east-1\ncreds: gcp:Service.json\nlogin user / register\nlogin: https://example.com/login\nPASSWORD_FILE\t/run/secrets/pw\nAPI_TOKEN_ID\t5f2b8c1e-0d3a-4b7e-9c6f-1a2b3c4d5e6f\nuser\tpassword\n\tpassword := os.Getenv(\"PW\")\nhttp://localhost:8080/users/@me/settings\nhttps://example.com:443/a/b@c\n"),
    ("short values under credential names that are none", 'api_key = "YOUR_API_KEY"\napi_key: "test_key_123"\nprivate_key: "id_rsa.pem"\naccess_token = "Bearer"\napi_key=getApiKey()\nencryption_key: "AES256GCM"\nauth_token: "{{ token }}"\nsigning_key: RS256\nmaster_key: config/master.key\napi_key: Settings.ApiKey2\nrequirepass ${REDIS_PASSWORD}\nrequirepass\n'),
    ("relative paths after password and secret keys", "password=./pw.txt\nDB_PASSWORD=../secrets/db_pw\nCLIENT_SECRET=./client_secret.json\nsecret_file: ~/.config/app/secret\n"),
    ("google ids, divisions and webhook docs", "client_id: 1234-abc.apps.googleusercontent.com\nx = 1//0\nprint(7//0)\nGOCSPX-\nhttps://discord.com/api/webhooks/{webhook.id}/{webhook.token}\nhttps://discord.com/developers/docs/resources/webhook\nSessionToken: ${AWS_SESSION_TOKEN}\n"),
    ("values read and printed that are no secrets", 'irb> ENV["HOME"]\n=> "/root"\nirb> ENV["API_TOKEN_URL"]\n=> "https://auth.example.com/token"\n$ echo $SECRET_NAME\nprod-db-credentials\n$ echo $SECRET_PATH\n/var/lib/app/secret-2\n$ echo $CLIENT_SECRET\n./deploy.sh\n$ cat ~/.ssh/id_ed25519.pub\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ci@host\n$ cat /etc/hostname\nbuild-runner-0a1b2c3d4e5f6a7b\n$ echo $TOKEN_COUNT\n12345678\n$ git rev-parse HEAD\n9f86d081884c7d659a2feaa0c55ad015a3bf4f1b\n'),
]

# Session 12: tokens whose prefix names their service, in prose and under names that say nothing
# (LLM providers first), `sk-` keys without OpenAI's marker, Azure AD client secrets.
rng6 = random.Random(6006)
def r6(n, alphabet=A): return "".join(rng6.choice(alphabet) for _ in range(n))
def hex6(n): return r6(n, "0123456789abcdef")
B32 = "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L"
prefixed = [
    ("openrouter-api-key", lambda: "sk-or-v1-" + hex6(64)),
    ("groq-api-key", lambda: "gsk_" + r6(52)),
    ("xai-api-key", lambda: "xai-" + r6(80)),
    ("perplexity-api-key", lambda: "pplx-" + r6(48)),
    ("replicate-api-token", lambda: "r8_" + r6(37)),
    ("fireworks-api-key", lambda: "fw_" + r6(24)),
    ("cerebras-api-key", lambda: "csk-" + r6(48, string.ascii_lowercase + string.digits)),
    ("nvidia-api-key", lambda: "nvapi-" + r6(64, A + "-_")),
    ("langsmith-api-key", lambda: "lsv2_pt_" + hex6(32) + "_" + hex6(10)),
    ("langfuse-secret-key", lambda: f"sk-lf-{hex6(8)}-{hex6(4)}-{hex6(4)}-{hex6(4)}-{hex6(12)}"),
    ("together-api-key", lambda: "tgp_v1_" + r6(43, A + "-_") + "Q"),
    ("pinecone-api-key", lambda: "pcsk_" + r6(6) + "_" + r6(64)),
    ("tavily-api-key", lambda: "tvly-dev-" + r6(32)),
    ("firecrawl-api-key", lambda: "fc-" + hex6(32)),
    ("e2b-api-key", lambda: "e2b_" + hex6(40)),
    ("browserbase-api-key", lambda: "bb_live_" + r6(27, A + "-_") + "x"),
    ("docker-hub-token", lambda: "dckr_pat_" + r6(26, A + "-_") + "Z"),
    ("digitalocean-token", lambda: "dop_v1_" + hex6(64)),
    ("heroku-api-key", lambda: "HRKU-" + r6(59, A + "-_") + "a"),
    ("flyio-token", lambda: "FlyV1 fm2_" + r6(300, A + "+/")),
    ("netlify-token", lambda: "nfp_" + r6(36)),
    ("terraform-cloud-token", lambda: r6(14) + ".atlasv1." + r6(66)),
    ("hashicorp-vault-token", lambda: "hvs.CAESI" + r6(90, A + "_")),
    ("doppler-token", lambda: "dp.st.prd." + r6(43)),
    ("onepassword-service-token", lambda: "ops_eyJ" + r6(400, A + "+/")),
    ("jfrog-api-key", lambda: "AKCp" + r6(69)),
    ("rubygems-api-key", lambda: "rubygems_" + hex6(48)),
    ("age-secret-key", lambda: "AGE-SECRET-KEY-1" + r6(58, B32)),
    ("sentry-token", lambda: "sntryu_" + hex6(64)),
    ("grafana-token", lambda: "glsa_" + r6(32) + "_" + hex6(8)),
    ("new-relic-key", lambda: "NRAK-" + r6(27, string.ascii_uppercase + string.digits)),
    ("postman-api-key", lambda: "PMAK-" + hex6(24) + "-" + hex6(34)),
    ("posthog-personal-key", lambda: "phx_" + r6(47)),
    ("supabase-key", lambda: "sbp_" + hex6(40)),
    ("planetscale-token", lambda: "pscale_tkn_" + r6(43, A + "_")),
    ("atlassian-api-token", lambda: "ATATT3xFfGF0" + r6(170, A + "-_") + "=" + r6(8, "0123456789ABCDEF")),
    ("linear-api-key", lambda: "lin_api_" + r6(40)),
    ("notion-token", lambda: "ntn_" + r6(46)),
    ("figma-token", lambda: "figd_" + r6(39, A + "-_") + "k"),
    ("shopify-token", lambda: "shpat_" + hex6(32)),
    ("square-token", lambda: "sq0atp-" + r6(22, A + "-_")),
    ("mapbox-secret-token", lambda: "sk.eyJ1Ijoi" + r6(40) + "." + r6(22)),
    ("openai-compatible-api-key", lambda: "sk-" + r6(48)),
    ("openai-compatible-api-key", lambda: "sk-" + hex6(32)),
    ("azure-ad-client-secret", lambda: r6(3) + "8Q~" + r6(34, A + "_~.-")),
]
contexts = [
    lambda t: (f"I found this in the worker's log: {t} - is that one still live?", "is that one still live?"),
    lambda t: (f"export SERVICE_CONFIG={t}\nexport REGION=eu-west-1", "export REGION=eu-west-1"),
    lambda t: (f'{{"role": "user", "content": "use {t} for the deploy"}}', "for the deploy"),
]
def prefixed_cases(formats):
    """One case per (rule, make) format, its token in the contexts in turn."""
    for i, (rule, make) in enumerate(formats):
        t = make()
        text, keep = contexts[i % len(contexts)](t)
        case(f"{rule} ({['prose', 'unnamed variable', 'chat json'][i % len(contexts)]})", text, [t], rule, [keep])
prefixed_cases(prefixed)
negatives += [
    ("words and stand-ins that start like service tokens", "task-runner and disk-usage-report-for-the-main-volume\n.sk-fading-circle .sk-cube-grid\nOPENAI_API_KEY=sk-...\nsk-1234567890abcdef1234567890abcdef\nsk-abcdefghijklmnopqrstuvwxyz123456\nfw_update_firmware_for_device_2024\nhvs.config_backup_2024_01_01_final\nsb_secret_key_for_testing_only_2024\ndckr_pat_your_personal_token_2024x\ngsk_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\nlin_api_XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX\nrubygems_000000000000000000000000000000000000000000000000\nAGE-SECRET-KEY-1...\nthe sq0atp- prefix marks a Square access token\n"),
]

# Session 12, second part: passwords given by position to a login call, archive and openssl
# passwords, plain `mongo -p`, a secret piped into `docker secret create`, Go's typed `var`,
# `wp config set` and `dotnet user-secrets set`.
def pw6(): return r6(4) + rng6.choice("!#%-_") + r6(7)
p1 = pw6(); case("password given to smtp login", f'server = smtplib.SMTP_SSL("smtp.example.com")\nserver.login("alerts@example.com", "{p1}")', [p1], "password-assignment", ['server.login("alerts@example.com", "'])
p1 = pw6(); case("password given to jdbc getConnection", f'Connection c = DriverManager.getConnection(url, "admin", "{p1}");', [p1], "password-assignment", ['(url, "admin", "'])
p1 = pw6(); case("password given to PasswordAuthentication", f'return new PasswordAuthentication("mailer", "{p1}".toCharArray());', [p1], "password-assignment", [".toCharArray()"])
p1 = pw6(); case("zip password", f"zip -r -P {p1} backup.zip data/", [p1], "cli-password", ["backup.zip data/"])
p1 = pw6(); case("7z password", f"7z a -p{p1} -mhe=on backup.7z data/", [p1], "cli-password", ["-mhe=on backup.7z data/"])
p1 = pw6(); case("openssl enc password", f"openssl enc -aes-256-cbc -salt -k {p1} -in db.sql -out db.sql.enc", [p1], "cli-password", ["-in db.sql -out db.sql.enc"])
p1 = pw6(); case("mongo shell password", f'mongo "mongodb://db.internal/app" -u admin -p {p1} --authenticationDatabase admin', [p1], "cli-password", ["--authenticationDatabase admin"])
p1 = pw6(); case("secret piped into docker secret create", f'echo "{p1}" | docker secret create db_password -', [p1], "cli-password", ["| docker secret create db_password -"])
p1 = pw6(); case("go typed password var", f'var dbPassword string = "{p1}"', [p1], "password-assignment", ["var dbPassword string = "])
p1 = pw6(); case("wp config set password", f"wp config set DB_PASSWORD {p1} --type=constant", [p1], "password-assignment", ["--type=constant"])
p1 = pw6(); case("dotnet user secret", f'dotnet user-secrets set "Jwt:Secret" "{p1}"', [p1], "secret-assignment", ['dotnet user-secrets set "Jwt:Secret" "'])
p1 = pw6(); case("oracle thin jdbc url", f"jdbc:oracle:thin:scott/{p1}@db.internal:1521:ORCL", [p1], "cli-password", ["@db.internal:1521:ORCL"])
p1 = pw6(); case("sqlplus login", f"sqlplus -s system/{p1}@//db.internal:1521/orclpdb @report.sql", [p1], "cli-password", ["@//db.internal:1521/orclpdb @report.sql"])
t = r6(40); case("secret given to a config setter", f'spark.conf.set("spark.hadoop.fs.s3a.secret.key", "{t}")', [t], "secret-assignment", ["spark.hadoop.fs.s3a.secret.key"])
t = r6(36); case("token stored with setItem", f'localStorage.setItem("access_token", "{t}");', [t], "secret-assignment", ['localStorage.setItem("access_token", "'])
negatives += [
    ("setters that hold no secret", 'cache.set("token", token)\nheaders.set("Authorization", "Bearer " + token)\nmap.set("api_key_id", "5f2b8c1e-0d3a-4b7e-9c6f-1a2b3c4d5e6f")\nlocalStorage.setItem("theme", "dark-high-contrast-v2")\nconf.set("spark.sql.shuffle.partitions", "200")\nparams.set("secret_name", "prod/db-credentials")\n'),
    ("oracle logins without a password", "sqlplus / as sysdba\nsqlplus -s /nolog\nrman target /\nexpdp system/${ORACLE_PW} directory=dp\njdbc:oracle:thin:@db:1521:ORCL\nthe performance of the german chairman\n"),
    ("login calls, archives and shells without a password", 'i18n.login("Sign in", "Welcome back")\nclient.login(username, password)\nlogin("user", "password")\nlogin("admin", "${ADMIN_PW}")\nlibrary rarely temporary rar archives\ngzip -9 file\nunzip -o file.zip\nzip -r out.zip dir\n7z x archive.7z\ndocker run --name mongo -p 27017:27017 -d mongo:latest\nmongo --host db -u admin -p\nopenssl req -new -key key.pem -out csr.pem\necho "$DB_PW" | docker secret create db_password -\nvar dbPasswordLength string = "min16"\nwp config set WP_DEBUG true --raw\ndotnet user-secrets set "Logging:Level" "Debug"\n'),
]

# Session 14: more service tokens found by their prefix alone (ElevenLabs, Square production
# tokens, Databricks, Pulumi, Dropbox, Notion's older integration tokens, Buildkite, Contentful,
# Brevo, Neon, Facebook, Alibaba Cloud, Render).
rng14 = random.Random(1414)
def r14(n, alphabet=A): return "".join(rng14.choice(alphabet) for _ in range(n))
def hex14(n): return r14(n, "0123456789abcdef")
prefixed14 = [
    ("elevenlabs-api-key", lambda: "sk_" + hex14(48)),
    ("square-token", lambda: "EAAA" + r14(59, A + "-_") + "Q"),
    ("databricks-token", lambda: "dapi" + hex14(32)),
    ("pulumi-access-token", lambda: "pul-" + hex14(40)),
    ("dropbox-token", lambda: "sl.B" + r14(137, A + "-_") + "k"),
    ("notion-token", lambda: "secret_" + r14(43)),
    ("buildkite-token", lambda: "bkua_" + hex14(40)),
    ("contentful-token", lambda: "CFPAT-" + r14(42, A + "-_") + "x"),
    ("brevo-api-key", lambda: "xkeysib-" + hex14(64) + "-" + r14(16)),
    ("neon-api-key", lambda: "napi_" + r14(64, string.ascii_lowercase + string.digits)),
    ("facebook-access-token", lambda: "EAAG" + r14(150)),
    ("alibaba-access-key-id", lambda: "LTAI" + r14(20)),
    ("render-api-key", lambda: "rnd_" + r14(32)),
]
prefixed_cases(prefixed14)
negatives += [
    ("words and names that start like the newer service prefixes", "task_queue = disk_usage(mask_bits)\nsk_buff *skb = alloc_skb(len);\nssl.create_default_context()\nopen('/etc/ssl.conf')\nsl.no-such-thing\nsecret_key_base = ENV.fetch('SECRET_KEY_BASE')\nsecret_name = \"prod/db-credentials\"\nrnd_seed = 42\nrnd_state = np.random.RandomState(rnd_seed)\npul-down menu\nEAAA is not a token, nor is EAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\nsapi_version and dapi docs: dapi00000000000000000000000000000000\nLTAI_PLACEHOLDER_KEY_ID\nxkeysib-your-api-key-here\nCFPAT-...\n"),
]

# Session 14: generated passwords that start with `$` (not shell expansions: a byte follows the
# name that no expansion is followed by).
def dollar_pw(): return "$" + r14(4) + rng14.choice("*+#~^!%") + r14(6) + "$" + r14(3)
p1 = dollar_pw(); case("dollar password in .env", f"REDIS_HOST=cache.internal\nREDIS_PASSWORD={p1}\n", [p1], "password-assignment", ["REDIS_HOST=cache.internal"])
p1 = dollar_pw(); case("dollar password in a connection string", f"postgres://app.internal:5432/app?user=app&password={p1}", [p1], "password-assignment", ["postgres://app.internal:5432/app?user=app&password="])
p1 = dollar_pw(); case("dollar password in yaml", f"db:\n  user: app\n  password: {p1}\n  pool: 5\n", [p1], "password-assignment", ["  pool: 5"])
negatives += [
    ("shell expansions as values", "PASSWORD=$DB_PASSWORD\npassword: $PGPASS\npass=$(cat /run/secrets/db)\nexport PGPASSFILE=$HOME/.pgpass\nsecret=${APP_SECRET}\npassword=$DB_PASS@db.internal\npassword = $secret_from_env;\nAPI_SECRET=$VAULT_PREFIX/app/secret\n"),
]

# Session 14: a key, token or password that a sentence sets to a value.
t = r14(33); case("api key set to a value in prose", f'User: I set API_KEY to "{t}" and it still does not work.', [t], "secret-assignment", ["and it still does not work."])
t = r14(40); case("signing key rotated to a value", f"Yesterday we rotated the signing key to {t} on all hosts.", [t], "secret-assignment", ["on all hosts."])
p1 = pw6(); case("password changed to a value in prose", f"I changed the admin password to {p1} yesterday, can you update the config?", [p1], "password-assignment", ["yesterday, can you update the config?"])
negatives += [
    ("a mapbox public token in browser code", "mapboxgl.accessToken = 'pk.eyJ1IjoiZXhhbXBsZSIsImEiOiJjbHh5ejk4cnQwYWJjMmtwZDduNG1xd3p0In0.Xk9mQ2rT7vN4wZ8pL3bC6h';\nconst MAPBOX_TOKEN = \"pk.eyJ1IjoiYWNtZSIsImEiOiJja3Z6MnA5cWgwMDFwMnBxcjRrYjZ0cXVzIn0.Qm3Xv8Tz1Lp5Rw9Ky2Nb4g\";\n"),
    ("keys, tokens and passwords set to nothing secret", "set the key to true\nset the token to null\nset the cache key to user:12345\nchange the password to something stronger\nset API_KEY to your own key\nset the token to the value from step 2\nupdate the key to match the new schema_version_identifier\nreset your password to continue\nset the primary key to customer_account_identifier\n"),
]

# Session 14: real files on a Debian machine (Python's and node's libraries, crates, /etc) that
# the scan flagged: names in code, system configuration, documentation.
negatives += [
    ("names in javascript code", "this.socks5ChosenAuthType = constants_1.Socks5Auth.NoAuth;\nconst supportedAuthMethods = [constants_1.Socks5Auth.NoAuth];\nexports.X509SubjectKeyIDExtension = exports.X509AuthorityKeyIDExtension = exports.X509KeyUsageExtension = void 0;\nexports.X509KeyUsageExtension = X509KeyUsageExtension;\nclass X509KeyUsageExtension extends X509Extension {}\nconst encodedKey = util_1.encoding.base64Encode(publicKey);\nkeyDetails: protobuf_specs_1.PublicKeyDetails.PKIX_ECDSA_P256_SHA_256,\nRegOpenKeyEx = win32api.RegOpenKeyEx\n"),
    ("system files without a password", "root:*:20228:0:99999:7:::\ndaemon:*:20228:0:99999:7:::\nnobody:!:20228:0:99999:7:::\npassword\trequisite\t\t\tpam_deny.so\npassword\tinclude\t\tsu\nkpasswd\t\t464/tcp\npasswd-server\t752/udp\t\tpasswd_server\nyppasswdd\t100009\typpasswd\n#password_encryption = scram-sha-256\t# scram-sha-256 or md5\n"),
    ("documentation and declarations around passwords", "[RustCrypto/password-hashes]: https://github.com/RustCrypto/password-hashes\npub struct MI_UserCredentials_0 {\n    pub usernamePassword: MI_UsernamePasswordCreds,\n}\n     * Address6.fromWildcard('*:*:*:*:*:*:*:*').subnet;\n      key=\"-----BEGIN PRIVATE KEY-----\\\\nXXXX\\\\nXXXX\\\\n-----END PRIVATE KEY-----\"\n"),
]
t = r14(32); case("random token in code, quoted, before a semicolon", f'const apiKey = "{t}";\nfetch(url, {{ headers: {{ "x-api-key": apiKey }} }});', [t], "high-entropy-token", ["fetch(url"])

negatives += [
    ("a mount target and an escaped sentence", '"test": "docker run -it --rm --name pacotest -v \\"$PWD\\":/tmp -w /tmp node:18 npm test"\nassert!(!out.contains(secret), "a secret value was printed:\\n{out}");\n'),
]

def q(s): return json.dumps(s)  # TOML basic strings accept JSON escapes for these inputs
with open("cases.toml", "w") as f:
    f.write("# Generated by gen_cases.py (seed 1337): planted secrets and hard negatives.\n\n")
    for c in cases:
        f.write("[[case]]\n")
        f.write(f"name = {q(c['name'])}\ntext = {q(c['text'])}\nrule = {q(c['rule'])}\n")
        f.write(f"secrets = [{', '.join(q(s) for s in c['secrets'])}]\n")
        f.write(f"keep = [{', '.join(q(s) for s in c['keep'])}]\n\n")
    for name, text in negatives:
        f.write(f"[[negative]]\nname = {q(name)}\ntext = {q(text)}\n\n")
print(len(cases), "cases,", len(negatives), "negatives")
