-- Each registration of a client gets its own id, carried by its access tokens (`rid`): a client
-- deleted and registered anew has another, so the old registration's tokens never work again.
-- Registrations made before this migration keep the empty id, as their tokens carry none.
ALTER TABLE oauth_clients ADD COLUMN registration_id TEXT NOT NULL DEFAULT '';
