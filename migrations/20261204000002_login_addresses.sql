-- Where each user logged in from (an IPv4 address, or an IPv6 /64), so that every web
-- instance, and one started later, exempts that address from the email's login limit: failed
-- logins from elsewhere then cannot lock the user out, whichever instance answers.
CREATE TABLE login_addresses (
    user_id    bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    address    text NOT NULL CHECK (octet_length(address) BETWEEN 2 AND 64),
    last_login timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, address)
);

ALTER TABLE login_addresses ENABLE ROW LEVEL SECURITY;
ALTER TABLE login_addresses FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE, DELETE ON login_addresses TO pulse_web;
CREATE POLICY web_remembers_logins ON login_addresses TO pulse_web USING (true) WITH CHECK (true);
