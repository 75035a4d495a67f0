-- A bulk job's worker holds a lease (a random token set when it claims the job); every card it
-- makes is inserted and listed in the job in one transaction that checks the lease, so a worker
-- whose job was taken over (it stalled, another instance claimed it) can add nothing more.
ALTER TABLE bulk_jobs ADD COLUMN lease TEXT;
