-- Management tokens may expire: NULL means never. The bearer check refuses a token whose
-- expires_at has passed; expired tokens stay listed until revoked.
ALTER TABLE management_tokens ADD COLUMN expires_at TIMESTAMPTZ;
