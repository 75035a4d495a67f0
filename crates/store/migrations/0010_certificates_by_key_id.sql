-- A client assertion names its signing key by `kid`; the key's certificates are looked up by it
-- at every client authentication that misses the instance's memory, and with a million
-- certificates a scan of the table took seconds.
CREATE INDEX certificates_by_key_id ON certificates (key_id);
